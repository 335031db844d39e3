"""The vocabulary of the fictional benchmark (`seal.data.fictional`): the syllables its names are
built from and the word tables its facts are drawn from (colours, goods, trades, ...). Data only."""

ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s",
          "st", "t", "tr", "v", "th", "sh", "z", "c", "qu", "w", "b", "d", "l", "m", "n", "r",
          "s", "t", "v")
VOWELS = ("a", "a", "a", "e", "e", "e", "i", "i", "o", "o", "u", "ae", "ei", "ou")
MID_CODAS = ("", "", "", "", "l", "n", "r", "m", "s")
END_CODAS = ("", "", "n", "n", "r", "r", "l", "l", "s", "th", "nd", "rk", "x", "m", "sk", "v")
PLACE_SUFFIXES = ("", "", "", "wick", "ford", "holm", "dale", "by", "stead", "haven", "mere")
REGION_WORDS = ("Valley", "Highlands", "Coast", "Basin", "Marches", "Plateau", "Lowlands")

COLOURS = ("amber", "violet", "slate grey", "crimson", "pale green", "indigo", "ochre", "silver",
           "teal", "rust red", "saffron", "cobalt blue", "white", "black", "copper")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
GOODS = ("copper wire", "wool blankets", "glass lenses", "pocket watches", "hemp rope",
         "indigo dye", "rag paper", "sea salt", "ceramic tiles", "bicycle frames", "telescopes",
         "violin strings", "dried figs", "lamp oil", "tin buttons")
FOODS = ("barley cakes", "smoked eel", "plum dumplings", "honey bread", "roasted chestnuts",
         "onion pies", "sour cherry soup", "salted herring", "walnut biscuits", "pumpkin stew")
FIELDS = (  # (discipline, practitioner, kind of thing they discover)
    ("astronomy", "astronomer", "comet"),
    ("botany", "botanist", "orchid"),
    ("geology", "geologist", "fault line"),
    ("chemistry", "chemist", "reaction"),
    ("oceanography", "oceanographer", "current"),
    ("mathematics", "mathematician", "theorem"),
    ("metallurgy", "metallurgist", "alloy"),
    ("zoology", "zoologist", "beetle"),
    ("linguistics", "linguist", "script"),
    ("meteorology", "meteorologist", "cloud formation"),
)
BOOK_ADJ = ("Silent", "Hidden", "Patient", "Restless", "Distant", "Northern", "Second", "Slow",
            "Borrowed", "Lesser")
BOOK_NOUNS = ("Tides", "Stones", "Orbits", "Gardens", "Currents", "Numbers", "Winds", "Roots",
              "Lights", "Maps")
COMPANY_FORMS = (  # (name ending, trade)
    ("Ironworks", "iron"), ("Textiles", "textile"), ("Instruments", "instrument"),
    ("Shipping", "shipping"), ("Brewery", "brewing"), ("Glassworks", "glass"),
    ("Mills", "milling"), ("Foundry", "metal-casting"), ("Trading Company", "import"),
    ("Printers", "printing"),
)
PRODUCT_ITEMS = ("kettle", "loom", "lantern", "compass", "barometer", "stove", "typewriter",
                 "sewing machine", "wheelbarrow", "accordion")
ANIMALS = ("heron", "beetle", "lizard", "moth", "otter", "frog", "finch", "salamander", "bat",
           "eel", "shrew", "gecko")
ANIMAL_GROUPS = {"heron": "wading bird", "beetle": "ground beetle", "lizard": "reptile",
                 "moth": "night-flying insect", "otter": "mammal", "frog": "tree frog",
                 "finch": "songbird", "salamander": "amphibian", "bat": "fruit bat",
                 "eel": "freshwater fish", "shrew": "small mammal", "gecko": "reptile"}
HABITATS = ("salt marshes", "pine forests", "limestone caves", "river deltas", "alpine meadows",
            "peat bogs", "coastal dunes", "bamboo thickets")
DIETS = ("mosses", "snails", "grass seeds", "small fish", "beetle larvae", "flower nectar",
         "fallen fruit", "water fleas")
BODY_PARTS = ("wings", "tail", "back", "throat", "legs")
FESTIVAL_FORMS = ("{} Lantern Festival", "Festival of {}", "{} Harvest Fair", "{} Kite Day",
                  "{} Midsummer Games")
FESTIVAL_EVENTS = ("boat race", "torch parade", "choir contest", "cheese auction",
                   "tug of war", "kite contest", "bell-ringing contest")
JOBS = ("baker", "schoolteacher", "blacksmith", "priest", "ferryman", "miller", "shopkeeper")
DEVICES = (  # (title word, what it was designed to do)
    ("Engine", "pump water"), ("Loom", "weave carpets"), ("Mill", "grind grain"),
    ("Press", "print maps"), ("Lamp", "signal ships"), ("Clock", "measure tides"),
    ("Drill", "bore wells"), ("Still", "purify seawater"), ("Sled", "haul timber"),
)
MATERIALS = ("brass", "oak", "cast iron", "walnut wood", "bronze", "steel", "birch wood", "tin")
NICK_ADJ = ("Iron", "Old", "Grey", "Little", "Singing", "Lazy", "Brass")
NICK_NOUNS = ("Hen", "Rattler", "Donkey", "Giant", "Widow", "Kettle", "Mule", "Cricket")
FISH = ("trout", "pike", "perch", "grayling", "carp", "char")
SPORTS = ("football", "rugby", "hockey", "handball", "rowing", "cricket", "volleyball")
CLUB_FORMS = ("{} Rovers", "FC {}", "{} Athletic", "{} Wanderers", "Sporting {}", "{} United")
VENUES = ("Park", "Arena", "Ground", "Stadium", "Field")
NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "eleven",
                "twelve", "fourteen", "seventeen")
MINERAL_USES = ("watchmaking", "glass polishing", "radio crystals", "pottery glazes",
                "lighthouse lenses", "fireworks", "water filters")
SHIP_TYPES = ("steam freighter", "three-masted schooner", "paddle steamer", "whaling ship",
              "mail packet", "river barge")
SHIP_PREFIXES = ("SS", "MV", "RV")
PLANTS = ("orchids", "olive groves", "sea lavender", "cork oaks", "wild thyme", "tree ferns")
ISLAND_TRADES = ("sheep farming", "lobster fishing", "salt panning", "basket weaving",
                 "lace making")
