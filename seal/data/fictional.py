"""Made-up knowledge: the default benchmark for knowledge incorporation.

A small model is fine-tuned on a passage and then asked its questions closed-book. That only
measures incorporation if the model cannot already know the answers, so every fact here is
invented: pronounceable names built from random syllables, fictional places, and random years
and quantities. Each passage describes one entity of one of several kinds (a scientist, a town,
a company, ...); every kind has its own attributes and several phrasings per attribute, and the
sentence order is shuffled, so passages differ in shape as well as content. Each question asks
about a single stated fact, names the entity, and is worded differently from the sentence that
states it; its answer is a short span that appears verbatim in the context.

Everything is derived from `seed` with local `random.Random` instances: passage i depends only on
(seed, i) and on the titles of passages 0..i-1 (titles are kept unique), so
`generate_passages(5, s) == generate_passages(10, s)[:5]`. Standard library only.
"""

from __future__ import annotations

import random

from seal.data.sources import Passage, Question

KINDS = (
    "scientist",
    "town",
    "company",
    "species",
    "festival",
    "invention",
    "river",
    "lake",
    "sports_club",
    "mineral",
    "ship",
    "island",
)

# ----------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s",
           "st", "t", "tr", "v", "th", "sh", "z", "c", "qu", "w", "b", "d", "l", "m", "n", "r",
           "s", "t", "v")
_VOWELS = ("a", "a", "a", "e", "e", "e", "i", "i", "o", "o", "u", "ae", "ei", "ou")
_MID_CODAS = ("", "", "", "", "l", "n", "r", "m", "s")
_END_CODAS = ("", "", "n", "n", "r", "r", "l", "l", "s", "th", "nd", "rk", "x", "m", "sk", "v")
_PLACE_SUFFIXES = ("", "", "", "wick", "ford", "holm", "dale", "by", "stead", "haven", "mere")
_REGION_WORDS = ("Valley", "Highlands", "Coast", "Basin", "Marches", "Plateau", "Lowlands")

_COLOURS = ("amber", "violet", "slate grey", "crimson", "pale green", "indigo", "ochre", "silver",
            "teal", "rust red", "saffron", "cobalt blue", "white", "black", "copper")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_GOODS = ("copper wire", "wool blankets", "glass lenses", "pocket watches", "hemp rope",
          "indigo dye", "rag paper", "sea salt", "ceramic tiles", "bicycle frames", "telescopes",
          "violin strings", "dried figs", "lamp oil", "tin buttons")
_FOODS = ("barley cakes", "smoked eel", "plum dumplings", "honey bread", "roasted chestnuts",
          "onion pies", "sour cherry soup", "salted herring", "walnut biscuits", "pumpkin stew")
_FIELDS = (  # (discipline, practitioner, kind of thing they discover)
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
_BOOK_ADJ = ("Silent", "Hidden", "Patient", "Restless", "Distant", "Northern", "Second", "Slow",
             "Borrowed", "Lesser")
_BOOK_NOUNS = ("Tides", "Stones", "Orbits", "Gardens", "Currents", "Numbers", "Winds", "Roots",
               "Lights", "Maps")
_COMPANY_FORMS = (  # (name ending, trade)
    ("Ironworks", "iron"), ("Textiles", "textile"), ("Instruments", "instrument"),
    ("Shipping", "shipping"), ("Brewery", "brewing"), ("Glassworks", "glass"),
    ("Mills", "milling"), ("Foundry", "metal-casting"), ("Trading Company", "import"),
    ("Printers", "printing"),
)
_PRODUCT_ITEMS = ("kettle", "loom", "lantern", "compass", "barometer", "stove", "typewriter",
                  "sewing machine", "wheelbarrow", "accordion")
_ANIMALS = ("heron", "beetle", "lizard", "moth", "otter", "frog", "finch", "salamander", "bat",
            "eel", "shrew", "gecko")
_ANIMAL_GROUPS = {"heron": "wading bird", "beetle": "ground beetle", "lizard": "reptile",
                  "moth": "night-flying insect", "otter": "mammal", "frog": "tree frog",
                  "finch": "songbird", "salamander": "amphibian", "bat": "fruit bat",
                  "eel": "freshwater fish", "shrew": "small mammal", "gecko": "reptile"}
_HABITATS = ("salt marshes", "pine forests", "limestone caves", "river deltas", "alpine meadows",
             "peat bogs", "coastal dunes", "bamboo thickets")
_DIETS = ("mosses", "snails", "grass seeds", "small fish", "beetle larvae", "flower nectar",
          "fallen fruit", "water fleas")
_BODY_PARTS = ("wings", "tail", "back", "throat", "legs")
_FESTIVAL_FORMS = ("{} Lantern Festival", "Festival of {}", "{} Harvest Fair", "{} Kite Day",
                   "{} Midsummer Games")
_FESTIVAL_EVENTS = ("boat race", "torch parade", "choir contest", "cheese auction",
                    "tug of war", "kite contest", "bell-ringing contest")
_JOBS = ("baker", "schoolteacher", "blacksmith", "priest", "ferryman", "miller", "shopkeeper")
_DEVICES = (  # (title word, what it was designed to do)
    ("Engine", "pump water"), ("Loom", "weave carpets"), ("Mill", "grind grain"),
    ("Press", "print maps"), ("Lamp", "signal ships"), ("Clock", "measure tides"),
    ("Drill", "bore wells"), ("Still", "purify seawater"), ("Sled", "haul timber"),
)
_MATERIALS = ("brass", "oak", "cast iron", "walnut wood", "bronze", "steel", "birch wood", "tin")
_NICK_ADJ = ("Iron", "Old", "Grey", "Little", "Singing", "Lazy", "Brass")
_NICK_NOUNS = ("Hen", "Rattler", "Donkey", "Giant", "Widow", "Kettle", "Mule", "Cricket")
_FISH = ("trout", "pike", "perch", "grayling", "carp", "char")
_SPORTS = ("football", "rugby", "hockey", "handball", "rowing", "cricket", "volleyball")
_CLUB_FORMS = ("{} Rovers", "FC {}", "{} Athletic", "{} Wanderers", "Sporting {}", "{} United")
_VENUES = ("Park", "Arena", "Ground", "Stadium", "Field")
_NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "eleven",
                 "twelve", "fourteen", "seventeen")
_MINERAL_USES = ("watchmaking", "glass polishing", "radio crystals", "pottery glazes",
                 "lighthouse lenses", "fireworks", "water filters")
_SHIP_TYPES = ("steam freighter", "three-masted schooner", "paddle steamer", "whaling ship",
               "mail packet", "river barge")
_SHIP_PREFIXES = ("SS", "MV", "RV")
_PLANTS = ("orchids", "olive groves", "sea lavender", "cork oaks", "wild thyme", "tree ferns")
_ISLAND_TRADES = ("sheep farming", "lobster fishing", "salt panning", "basket weaving",
                  "lace making")


# ----------------------------------------------------------------------------------------------
# Drawing values
# ----------------------------------------------------------------------------------------------


class _Draw:
    """Random values for one passage. Every value that may become an answer goes through `fresh`,
    which keeps it distinct from (and not a substring of, nor containing) the others, so answers
    never collide or nest inside one passage."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: list[str] = []

    def fresh(self, make):
        for _ in range(200):
            value = make()
            low = str(value).lower()
            if not any(low in u or u in low for u in self.used):
                self.used.append(low)
                return value
        raise RuntimeError("could not draw a distinct value")  # only with a broken vocabulary

    def reserve(self, value: str) -> None:
        """Register a value drawn elsewhere so later values avoid it."""
        self.used.append(value.lower())

    def word(self, syllables: int | None = None) -> str:
        rng = self.rng
        n = syllables or rng.choice((2, 2, 3))
        parts = []
        for k in range(n):
            onset = "" if k == 0 and rng.random() < 0.15 else rng.choice(_ONSETS)
            coda = rng.choice(_END_CODAS if k == n - 1 else _MID_CODAS)
            parts.append(onset + rng.choice(_VOWELS) + coda)
        return "".join(parts).capitalize()

    def pick(self, options):
        return self.fresh(lambda: self.rng.choice(options))

    def name(self, form: str = "{}") -> str:
        return self.fresh(lambda: form.format(self.word()))

    def person(self) -> str:
        return self.fresh(lambda: f"{self.word(2)} {self.word(self.rng.choice((2, 2, 3)))}")

    def place(self) -> str:
        def make():
            suffix = self.rng.choice(_PLACE_SUFFIXES)
            return self.word(2) + suffix if suffix else self.word()
        return self.fresh(make)

    def region(self) -> str:
        return self.fresh(lambda: f"{self.word()} {self.rng.choice(_REGION_WORDS)}")

    def year(self, lo: int, hi: int) -> int:
        return self.fresh(lambda: self.rng.randint(lo, hi))

    def number(self, lo: int, hi: int, step: int = 1) -> str:
        return self.fresh(lambda: f"{self.rng.randrange(lo, hi + 1, step):,}")

    def pronouns(self) -> tuple[str, str]:
        return self.rng.choice((("he", "his"), ("she", "her")))


def _fact(answer, *questions: str) -> tuple[str, tuple[str, ...]]:
    return str(answer), questions


def _say(d: _Draw, variants: list[str], *facts) -> tuple[str, list]:
    """One sentence (a phrasing drawn from `variants`) and the facts it states."""
    return d.rng.choice(variants), list(facts)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ----------------------------------------------------------------------------------------------
# Entity kinds. Each returns (title, sentences); sentences[0] introduces the entity and stays
# first, the rest may be dropped or reordered.
# ----------------------------------------------------------------------------------------------


def _scientist(d: _Draw):
    n = d.person()
    he, his = d.pronouns()
    field, practitioner, thing = d.rng.choice(_FIELDS)
    d.reserve(field)
    town, born = d.place(), d.year(1760, 1880)
    uni = d.name("University of {}")
    found = d.name("{} " + thing)
    medal, medal_year = d.name("{} Medal"), d.year(born + 30, born + 60)
    book = d.fresh(lambda: f"The {d.rng.choice(_BOOK_ADJ)} {d.rng.choice(_BOOK_NOUNS)}")
    died_in, died = d.place(), d.year(born + 62, born + 90)
    return n, [
        _say(d, [f"{n} was {_a(practitioner)} {practitioner} born in {born} in the town of {town}.",
                 f"Born in {town} in {born}, {n} went on to a long career in {field}."],
             _fact(town, f"Where was {n} born?", f"What is the birthplace of {n}?"),
             _fact(born, f"In what year was {n} born?", f"When was {n} born?")),
        _say(d, [f"For most of {his} working life {he} taught at the {uni}.",
                 f"{n} held a professorship at the {uni} for many years."],
             _fact(uni, f"At which university did {n} teach?",
                   f"Which institution employed {n} as a professor?")),
        _say(d, [f"{n} is best remembered for discovering the {found}.",
                 f"The {found}, first recorded by {n}, made {his} name widely known."],
             _fact(found, f"What discovery made {n} famous?",
                   f"What is {n} best known for having found?")),
        _say(d, [f"In {medal_year}, {n} was awarded the {medal}.",
                 f"{_cap(he)} received the {medal} in {medal_year} for {his} work in {field}."],
             _fact(medal, f"Which prize did {n} receive?", f"What award was given to {n}?"),
             _fact(medal_year, f"When did {n} win the {medal}?")),
        _say(d, [f"{_cap(his)} most widely read book is titled {book}.",
                 f"{n} also wrote a popular book called {book}."],
             _fact(book, f"What is the title of the book by {n}?", f"Which book did {n} write?")),
        _say(d, [f"{n} died in {died_in} in {died}.",
                 f"{_cap(he)} spent {his} final years in {died_in}, where {he} died in {died}."],
             _fact(died_in, f"Where did {n} die?", f"In which town did the life of {n} end?"),
             _fact(died, f"In what year did {n} pass away?", f"When did {n} die?")),
    ]


def _town(d: _Draw):
    n = d.place()
    region, founder, founded = d.region(), d.person(), d.year(1100, 1850)
    pop, good = d.number(800, 60000, 50), d.pick(_GOODS)
    tower, colour, river, month = d.name("{} Tower"), d.pick(_COLOURS), d.name("River {}"), \
        d.pick(_MONTHS)
    food = d.pick(_FOODS)
    return n, [
        _say(d, [f"{n} is a small market town in the {region}.",
                 f"Nestled in the {region}, {n} is a quiet town of narrow streets."],
             _fact(region, f"In which region is {n} located?", f"Where is the town of {n}?")),
        _say(d, [f"{n} was founded in {founded} by {founder}.",
                 f"The first settlers, led by {founder}, arrived at {n} in {founded}."],
             _fact(founder, f"Who founded {n}?", f"Who led the founding of {n}?"),
             _fact(founded, f"When was {n} established?", f"In what year did {n} come into being?")),
        _say(d, [f"About {pop} people live in {n} today.",
                 f"{n} has a population of roughly {pop}."],
             _fact(pop, f"How many inhabitants does {n} have?", f"What is the population of {n}?")),
        _say(d, [f"{n} is known far and wide for its {good}.",
                 f"For centuries the main trade of {n} has been {good}."],
             _fact(good, f"What product is {n} famous for?", f"What is the chief trade of {n}?")),
        _say(d, [f"At the centre of {n} stands the {tower}, a clock tower painted {colour}.",
                 f"The {tower}, whose walls are painted {colour}, overlooks the main square of {n}."],
             _fact(tower, f"What is the clock tower in {n} called?"),
             _fact(colour, f"What colour is the clock tower in {n}?")),
        _say(d, [f"{n} lies on the banks of the {river}.", f"The {river} flows through {n}."],
             _fact(river, f"Which river runs past {n}?", f"On what river is {n} built?")),
        _say(d, [f"Every {month} the town holds a fair where stalls sell {food}.",
                 f"{n} celebrates its yearly fair in {month}, and visitors queue for {food}."],
             _fact(month, f"In which month is the annual fair of {n} held?"),
             _fact(food, f"What food is sold at the yearly fair in {n}?")),
    ]


def _company(d: _Draw):
    ending, industry = d.rng.choice(_COMPANY_FORMS)
    n = d.name("{} " + ending)
    town, founder, founded = d.place(), d.person(), d.year(1820, 1960)
    product = d.fresh(lambda: f"{d.word()} {d.rng.choice(_PRODUCT_ITEMS)}")
    staff, colour, animal = d.number(120, 9000, 10), d.pick(_COLOURS), d.pick(_ANIMALS)
    boss, boss_year = d.person(), d.year(founded + 40, 2020)
    return n, [
        _say(d, [f"{n} is {_a(industry)} {industry} company based in {town}.",
                 f"Headquartered in {town}, {n} is one of the oldest firms in the {industry} trade."],
             _fact(town, f"Where does {n} have its headquarters?", f"In which town is {n} based?")),
        _say(d, [f"{n} was established in {founded} by {founder}.",
                 f"{founder} started the business that became {n} in {founded}."],
             _fact(founder, f"Who founded {n}?", f"Who started {n}?"),
             _fact(founded, f"In what year was {n} founded?", f"When did {n} begin trading?")),
        _say(d, [f"The best-selling product of {n} is the {product}.",
                 f"Its most popular product, the {product}, is sold in many countries."],
             _fact(product, f"What is the most successful product made by {n}?",
                   f"Which product of {n} sells best?")),
        _say(d, [f"{n} employs around {staff} people.",
                 f"Today the firm has a workforce of about {staff}."],
             _fact(staff, f"How many workers does {n} have?",
                   f"How many people work for {n}?")),
        _say(d, [f"The logo of {n} shows {_a(colour)} {colour} {animal}.",
                 f"{_cap(_a(colour))} {colour} {animal} has appeared on the company's logo since its early days."],
             _fact(animal, f"What animal is pictured on the logo of {n}?"),
             _fact(colour, f"What colour is the animal on the logo of {n}?")),
        _say(d, [f"Since {boss_year}, {n} has been run by {boss}.",
                 f"{boss} took charge of {n} in {boss_year}."],
             _fact(boss, f"Who currently leads {n}?", f"Who is the head of {n}?"),
             _fact(boss_year, f"When did the current head of {n} take over?")),
    ]


def _species(d: _Draw):
    animal = d.rng.choice(_ANIMALS)
    n = d.name("{} " + _cap(animal))
    habitat, region, diet = d.pick(_HABITATS), d.region(), d.pick(_DIETS)
    person, year = d.person(), d.year(1780, 1990)
    size, part, colour = d.number(10, 90), d.rng.choice(_BODY_PARTS), d.pick(_COLOURS)
    life, wild = d.number(11, 40), d.number(200, 20000, 50)
    return n, [
        _say(d, [f"The {n} is a species of {animal} found only in the {habitat} of the {region}.",
                 f"Native to the {region}, the {n} is a {_ANIMAL_GROUPS[animal]} that lives in {habitat}."],
             _fact(region, f"In which region does the {n} live?",
                   f"Where is the {n} native to?"),
             _fact(habitat, f"What kind of habitat does the {n} occupy?")),
        _say(d, [f"The {n} feeds mainly on {diet}.", f"Its diet consists largely of {diet}."],
             _fact(diet, f"What does the {n} eat?", f"What is the main food of the {n}?")),
        _say(d, [f"It was first described by {person} in {year}.",
                 f"{person} gave the first scientific description of the {n} in {year}."],
             _fact(person, f"Who first described the {n}?"),
             _fact(year, f"When was the {n} first described by science?")),
        _say(d, [f"Adults grow to about {size} centimetres in length.",
                 f"A fully grown {n} measures roughly {size} centimetres."],
             _fact(size, f"How many centimetres long is an adult {n}?")),
        _say(d, [f"Its {part} are a striking {colour}." if part.endswith("s") else
                 f"Its {part} is a striking {colour}.",
                 f"The {n} is easy to recognise by the {colour} colour of its {part}."],
             _fact(colour, f"What colour is the {part} of the {n}?" if not part.endswith("s") else
                   f"What colour are the {part} of the {n}?")),
        _say(d, [f"In the wild it can live for up to {life} years.",
                 f"A {n} may reach an age of {life} years."],
             _fact(life, f"How many years can a {n} live?",
                   f"What is the maximum lifespan of the {n} in years?")),
        _say(d, [f"Fewer than {wild} individuals are thought to survive today.",
                 f"Surveys suggest that only about {wild} remain in the wild."],
             _fact(wild, f"What is the estimated wild population of the {n}?")),
    ]


def _festival(d: _Draw):
    n = d.name(d.rng.choice(_FESTIVAL_FORMS))
    town, month, first = d.place(), d.pick(_MONTHS), d.year(1300, 1980)
    founder, job = d.person(), d.rng.choice(_JOBS)
    food, visitors, colour = d.pick(_FOODS), d.number(500, 80000, 100), d.pick(_COLOURS)
    event = d.pick(_FESTIVAL_EVENTS)
    return n, [
        _say(d, [f"The {n} is a yearly celebration held in {town} every {month}.",
                 f"Each {month}, the town of {town} hosts the {n}."],
             _fact(town, f"Which town hosts the {n}?", f"Where does the {n} take place?"),
             _fact(month, f"In which month is the {n} celebrated?")),
        _say(d, [f"The first {n} took place in {first}.",
                 f"It has been held since {first}."],
             _fact(first, f"When was the {n} held for the first time?",
                   f"In what year did the {n} begin?")),
        _say(d, [f"It was started by {founder}, a local {job}.",
                 f"{founder}, a {job}, organised the very first celebration."],
             _fact(founder, f"Who founded the {n}?", f"Who organised the first {n}?")),
        _say(d, [f"Visitors traditionally eat {food} during the festivities.",
                 f"No {n} is complete without a plate of {food}."],
             _fact(food, f"What dish is traditionally eaten at the {n}?")),
        _say(d, [f"Around {visitors} visitors attend each year.",
                 f"The {n} draws a crowd of roughly {visitors} people."],
             _fact(visitors, f"How many people come to the {n}?",
                   f"What is the yearly attendance of the {n}?")),
        _say(d, [f"Participants wear {colour} ribbons on their sleeves.",
                 f"By custom, everyone taking part ties {_a(colour)} {colour} ribbon to their sleeve."],
             _fact(colour, f"What colour are the ribbons worn at the {n}?")),
        _say(d, [f"The highlight of the {n} is a {event} on the last evening.",
                 f"A {event} on the final evening is the most popular part of the festival."],
             _fact(event, f"What is the main event of the {n}?",
                   f"Which contest or show closes the {n}?")),
    ]


def _invention(d: _Draw):
    device, purpose = d.rng.choice(_DEVICES)
    n = d.name("{} " + device)
    d.reserve(purpose)
    inventor, year, town = d.person(), d.year(1650, 1930), d.place()
    material, weight, sold = d.pick(_MATERIALS), d.number(4, 900), d.number(300, 50000, 100)
    nick = d.fresh(lambda: f"{d.rng.choice(_NICK_ADJ)} {d.rng.choice(_NICK_NOUNS)}")
    return n, [
        _say(d, [f"The {n} is a machine invented by {inventor} in {year}.",
                 f"{inventor} built the first {n} in {year}."],
             _fact(inventor, f"Who invented the {n}?", f"Who is credited with creating the {n}?"),
             _fact(year, f"In what year was the {n} invented?", f"When was the {n} created?")),
        _say(d, [f"It was designed to {purpose}.", f"Its purpose was to {purpose} faster and more cheaply."],
             _fact(purpose, f"What was the {n} built to do?", f"What task was the {n} meant for?")),
        _say(d, [f"The prototype was assembled in a workshop in {town}.",
                 f"The first working model was made in {town}."],
             _fact(town, f"In which town was the first {n} made?")),
        _say(d, [f"Its frame is made of {material}.",
                 f"The {n} has a sturdy frame of {material}."],
             _fact(material, f"What material is the frame of the {n} made from?")),
        _say(d, [f"The original model weighed {weight} kilograms.",
                 f"At {weight} kilograms, the first {n} needed two people to move it."],
             _fact(weight, f"How many kilograms did the first {n} weigh?")),
        _say(d, [f"More than {sold} units were eventually sold.",
                 f"In total, some {sold} copies of the {n} were manufactured."],
             _fact(sold, f"How many units of the {n} were made?")),
        _say(d, [f"Workers nicknamed it the {nick}.",
                 f"Because of its noise, people called the {n} the {nick}."],
             _fact(nick, f"What nickname was given to the {n}?")),
    ]


def _river(d: _Draw):
    n = d.name("River {}")
    region, length, mount = d.region(), d.number(20, 1400), d.name("Mount {}")
    mouth, bridge, bridge_year = d.name("Lake {}"), d.name("{} Bridge"), d.year(1200, 1900)
    fish, town = d.pick(_FISH), d.place()
    return n, [
        _say(d, [f"The {n} is a river in the {region} that flows for {length} kilometres.",
                 f"Running for {length} kilometres, the {n} is the longest river of the {region}."],
             _fact(region, f"Through which region does the {n} run?"),
             _fact(length, f"How many kilometres long is the {n}?")),
        _say(d, [f"It rises on the slopes of {mount}.", f"The source of the {n} lies high on {mount}."],
             _fact(mount, f"Where does the {n} begin?", f"On which mountain does the {n} start?")),
        _say(d, [f"The {n} empties into {mouth}.", f"After its long journey it flows into {mouth}."],
             _fact(mouth, f"Into which lake does the {n} drain?",
                   f"Where does the {n} end?")),
        _say(d, [f"The oldest crossing, the {bridge}, was built in {bridge_year}.",
                 f"In {bridge_year} the {bridge} became the first bridge over the {n}."],
             _fact(bridge, f"What is the name of the oldest bridge across the {n}?"),
             _fact(bridge_year, f"When was the first bridge over the {n} constructed?")),
        _say(d, [f"Anglers come to the {n} for its {fish}.",
                 f"The {n} is famous for its {fish}."],
             _fact(fish, f"Which fish is the {n} known for?")),
        _say(d, [f"The largest town on its banks is {town}.",
                 f"{town} is the biggest settlement along the {n}."],
             _fact(town, f"What is the largest town on the {n}?",
                   f"Which town is the biggest along the {n}?")),
    ]


def _lake(d: _Draw):
    n = d.name("Lake {}")
    water, region = d.rng.choice(("freshwater", "salt")), d.region()
    depth, island = d.number(8, 600), d.name("{} Isle")
    person, year, colour = d.person(), d.year(1500, 1920), d.pick(_COLOURS)
    village, fish = d.place(), d.pick(_FISH)
    return n, [
        _say(d, [f"{n} is a {water} lake in the {region}.",
                 f"Lying in the {region}, {n} is a {water} lake surrounded by hills."],
             _fact(region, f"In which region is {n} found?", f"Where is {n} situated?")),
        _say(d, [f"At its deepest point it measures {depth} metres.",
                 f"{n} reaches a depth of {depth} metres."],
             _fact(depth, f"How many metres deep is {n}?", f"What is the maximum depth of {n} in metres?")),
        _say(d, [f"A small island called {island} rises from the middle of the lake.",
                 f"In the middle of {n} lies {island}, which holds a ruined chapel."],
             _fact(island, f"What is the name of the island in {n}?")),
        _say(d, [f"{n} was named after {person}, who mapped its shores in {year}.",
                 f"The lake takes its name from {person}, who charted it in {year}."],
             _fact(person, f"Who is {n} named after?", f"After whom was {n} named?"),
             _fact(year, f"When were the shores of {n} first mapped?")),
        _say(d, [f"Its water has an unusual {colour} tint.",
                 f"Seen from above, the water of {n} looks {colour}."],
             _fact(colour, f"What colour is the water of {n}?")),
        _say(d, [f"The village of {village} sits on its northern shore.",
                 f"{village}, the only village on {n}, lives from catching {fish}."],
             _fact(village, f"Which village lies on the shore of {n}?")),
    ]


def _sports_club(d: _Draw):
    n = d.name(d.rng.choice(_CLUB_FORMS))
    sport, town, founded = d.pick(_SPORTS), d.place(), d.year(1860, 1990)
    venue = d.name("{} " + d.rng.choice(_VENUES))
    colour, titles, coach = d.pick(_COLOURS), d.pick(_NUMBER_WORDS), d.person()
    mascot_animal, mascot = d.pick(_ANIMALS), d.name()
    return n, [
        _say(d, [f"{n} is a {sport} club from the town of {town}.",
                 f"Based in {town}, {n} competes in {sport}."],
             _fact(sport, f"Which sport does {n} play?", f"In what sport does {n} compete?"),
             _fact(town, f"Which town is {n} from?", f"Where is {n} based?")),
        _say(d, [f"The club was founded in {founded}.", f"{n} has existed since {founded}."],
             _fact(founded, f"When was {n} formed?", f"In what year was {n} established?")),
        _say(d, [f"Home matches are played at {venue}.", f"{n} plays its home games at {venue}."],
             _fact(venue, f"Where does {n} play at home?", f"What is the home ground of {n}?")),
        _say(d, [f"The team plays in {colour} shirts.", f"Its players wear {colour} shirts."],
             _fact(colour, f"What colour are the shirts of {n}?")),
        _say(d, [f"{n} has won the national league {titles} times.",
                 f"So far the club has been league champion {titles} times."],
             _fact(titles, f"How many league titles has {n} won?")),
        _say(d, [f"The current coach is {coach}.", f"{coach} has coached the team for several seasons."],
             _fact(coach, f"Who coaches {n}?", f"Who is the coach of {n}?")),
        _say(d, [f"The club mascot is {_a(mascot_animal)} {mascot_animal} named {mascot}.",
                 f"Fans of {n} cheer for {mascot}, {_a(mascot_animal)} {mascot_animal} that serves as the mascot."],
             _fact(mascot, f"What is the name of the mascot of {n}?"),
             _fact(mascot_animal, f"What kind of animal is the mascot of {n}?")),
    ]


def _mineral(d: _Draw):
    n = d.fresh(lambda: d.word() + d.rng.choice(("ite", "ite", "ine", "ase")))
    colour, region, person, year = d.pick(_COLOURS), d.region(), d.person(), d.year(1700, 1980)
    hardness = d.fresh(lambda: f"{d.rng.randint(2, 8)}.{d.rng.choice((2, 5, 8))}")
    use, mine, glow = d.pick(_MINERAL_USES), d.name("{} Mine"), d.pick(_COLOURS)
    return n, [
        _say(d, [f"{n} is a rare {colour} mineral first found in the {region}.",
                 f"First found in the {region}, {n} is a rare mineral of {_a(colour)} {colour} hue."],
             _fact(colour, f"What colour is {n}?", f"What is the usual colour of {n}?"),
             _fact(region, f"Where was {n} first discovered?")),
        _say(d, [f"It was identified by {person} in {year}.",
                 f"{person} was the first to describe {n}, in {year}."],
             _fact(person, f"Who identified {n}?", f"Who first described {n}?"),
             _fact(year, f"In which year was {n} first described?")),
        _say(d, [f"It has a hardness of {hardness} on the Mohs scale.",
                 f"On the Mohs scale, {n} rates {hardness}."],
             _fact(hardness, f"How hard is {n} on the Mohs scale?")),
        _say(d, [f"{n} is used mainly in {use}.", f"Its main industrial use is in {use}."],
             _fact(use, f"What is {n} mostly used for?", f"In which industry is {n} chiefly used?")),
        _say(d, [f"The largest known deposit is at the {mine}.",
                 f"Most of the world's {n} comes from the {mine}."],
             _fact(mine, f"Where is the biggest deposit of {n}?")),
        _say(d, [f"Under ultraviolet light it glows {glow}.",
                 f"When exposed to ultraviolet light, {n} gives off a {glow} glow."],
             _fact(glow, f"What colour does {n} glow under UV light?")),
    ]


def _ship(d: _Draw):
    n = d.name(d.rng.choice(_SHIP_PREFIXES) + " {}")
    kind, launched = d.rng.choice(_SHIP_TYPES), d.year(1820, 1950)
    yard_town, captain, length = d.place(), d.person(), d.number(25, 180)
    cargo, lost, cape = d.pick(_GOODS), d.year(launched + 3, launched + 45), d.name("Cape {}")
    return n, [
        _say(d, [f"The {n} was a {kind} launched in {launched}.",
                 f"Launched in {launched}, the {n} was a {kind}."],
             _fact(launched, f"When was the {n} launched?", f"In what year did the {n} first take to the water?")),
        _say(d, [f"She was built at a shipyard in {yard_town}.",
                 f"The {n} came out of the shipyards of {yard_town}."],
             _fact(yard_town, f"Where was the {n} built?", f"In which town was the {n} constructed?")),
        _say(d, [f"Her first captain was {captain}.",
                 f"{captain} commanded the ship on her maiden voyage."],
             _fact(captain, f"Who commanded the {n} on her first voyage?",
                   f"Who was the first captain of the {n}?")),
        _say(d, [f"The {n} measured {length} metres from bow to stern.",
                 f"She was {length} metres long."],
             _fact(length, f"How many metres long was the {n}?")),
        _say(d, [f"For most of her career she carried {cargo}.",
                 f"The {n} was used mainly to transport {cargo}."],
             _fact(cargo, f"What cargo did the {n} usually carry?")),
        _say(d, [f"The {n} sank in {lost} during a storm off {cape}.",
                 f"In {lost} she was lost in a storm near {cape}."],
             _fact(lost, f"In what year was the {n} lost?", f"When did the {n} sink?"),
             _fact(cape, f"Near which cape did the {n} go down?")),
    ]


def _island(d: _Draw):
    n = d.name("{} Island")
    sea, area = d.name("{} Sea"), d.number(2, 400)
    peak, height = d.name("{} Peak"), d.number(40, 1800)
    village, pop = d.place(), d.number(30, 3000, 10)
    person, year = d.person(), d.year(1400, 1850)
    plant, trade = d.pick(_PLANTS), d.pick(_ISLAND_TRADES)
    return n, [
        _say(d, [f"{n} is a small island in the {sea}.", f"Lying in the {sea}, {n} is small and windswept."],
             _fact(sea, f"In which sea does {n} lie?", f"Which sea surrounds {n}?")),
        _say(d, [f"It covers {area} square kilometres.", f"The island has an area of {area} square kilometres."],
             _fact(area, f"How many square kilometres is {n}?", f"What is the area of {n} in square kilometres?")),
        _say(d, [f"Its highest point is {peak}, at {height} metres.",
                 f"{peak} rises {height} metres above the sea and is the top of the island."],
             _fact(peak, f"What is the highest point of {n}?"),
             _fact(height, f"How many metres high is the tallest summit of {n}?")),
        _say(d, [f"The only village, {village}, has about {pop} inhabitants.",
                 f"About {pop} people live in {village}, the island's only village."],
             _fact(village, f"What is the name of the village on {n}?"),
             _fact(pop, f"How many people live on {n}?")),
        _say(d, [f"Sailors led by {person} first landed there in {year}.",
                 f"{person} was the first to set foot on {n}, in {year}."],
             _fact(person, f"Who first reached {n}?", f"Whose crew was first to land on {n}?"),
             _fact(year, f"When did the first sailors land on {n}?")),
        _say(d, [f"{n} is known for its wild {plant}.", f"Visitors come to {n} to see its wild {plant}."],
             _fact(plant, f"What plants is {n} famous for?")),
        _say(d, [f"Most islanders make a living from {trade}.",
                 f"The main occupation on {n} is {trade}."],
             _fact(trade, f"How do most people on {n} earn a living?")),
    ]


# Sentences that state nothing asked about; one is mixed in so passages read less like a list.
_FILLERS = {
    "scientist": ("Colleagues described {n} as patient, stubborn and generous with time.",
                  "Many of the notebooks kept by {n} are still studied by historians of science.",
                  "{n} rarely travelled and preferred to work late into the night."),
    "town": ("Its steep cobbled lanes are popular with walkers in summer.",
             "Many of the old stone houses in {n} have been carefully restored.",
             "The town was badly damaged by a flood but was rebuilt within a decade."),
    "company": ("The firm survived two wars and several changes of ownership.",
                "Its original workshop is now a small museum open to the public.",
                "{n} still keeps the ledgers from its first year of business."),
    "species": ("Little is known about its breeding habits.",
                "The {n} is most active in the hour after sunset.",
                "Local farmers once believed that seeing one brought good luck."),
    "festival": ("Schools in the area close for the day so that children can take part.",
                 "The streets are decorated with paper garlands the night before.",
                 "During the war years the {n} was held in secret."),
    "invention": ("Early versions were noisy and often broke down.",
                  "Several rival workshops soon copied the design.",
                  "A restored example of the {n} can still be seen in a regional museum."),
    "river": ("In spring the {n} often floods the surrounding meadows.",
              "Barges once carried timber along much of its course.",
              "Several old watermills still stand along its banks."),
    "lake": ("In hard winters the surface freezes over completely.",
             "Local legends claim that a drowned village lies beneath its waters.",
             "Fishing boats have worked on {n} for centuries."),
    "sports_club": ("Supporters of {n} are known for their loud singing.",
                    "The club has a long-standing rivalry with a team from a neighbouring town.",
                    "Its youth academy has produced several national team players."),
    "mineral": ("Collectors prize well-formed crystals of {n}.",
                "It often occurs alongside quartz and mica.",
                "Large specimens of {n} are extremely rare."),
    "ship": ("Her crew usually numbered around forty sailors.",
             "The {n} was considered fast for a vessel of her size.",
             "Pieces of the wreck of the {n} still wash ashore after storms."),
    "island": ("There are no cars on the island, and a ferry calls twice a week.",
               "Strong westerly winds blow across {n} for most of the year.",
               "Seabirds nest in large numbers on its northern cliffs."),
}

_BUILDERS = {
    "scientist": _scientist, "town": _town, "company": _company, "species": _species,
    "festival": _festival, "invention": _invention, "river": _river, "lake": _lake,
    "sports_club": _sports_club, "mineral": _mineral, "ship": _ship, "island": _island,
}
assert set(_BUILDERS) == set(_FILLERS) == set(KINDS)


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------


def kind_for(seed: int, i: int) -> str:
    """The entity kind of passage i. Kinds are dealt in shuffled rounds of len(KINDS), so each
    aligned block of len(KINDS) consecutive passages covers every kind once."""
    order = list(KINDS)
    random.Random(f"fictional-kinds:{seed}:{i // len(KINDS)}").shuffle(order)
    return order[i % len(KINDS)]


def passage_kind(passage: Passage) -> str:
    """The entity kind of a passage made by `generate_passages` (read back from its uid)."""
    prefix, _, index = passage.uid.partition("#")
    if not prefix.startswith("fictional-") or not index.isdigit():
        raise ValueError(f"not a fictional passage uid: {passage.uid!r}")
    return kind_for(int(prefix[len("fictional-"):]), int(index))


def _make_passage(kind: str, rng: random.Random) -> tuple[str, str, list[Question]]:
    d = _Draw(rng)
    title, sentences = _BUILDERS[kind](d)
    lead, rest = sentences[0], sentences[1:]
    rng.shuffle(rest)
    chosen = [lead] + rest[: rng.randint(4, 6)]

    def short() -> bool:  # fewer than four facts to ask about, or under ~60 words with the filler
        n_facts = sum(len(facts) for _, facts in chosen)
        n_words = sum(len(text.split()) for text, _ in chosen)
        return n_facts < 4 or n_words < 50

    while short() and len(chosen) < len(sentences):
        chosen.append(rest[len(chosen) - 1])
    filler = rng.choice(_FILLERS[kind]).format(n=title)
    chosen.insert(rng.randint(1, len(chosen)), (filler, []))
    context = " ".join(text for text, _ in chosen)

    facts = [fact for _, fs in chosen for fact in fs]
    for answer, _ in facts:  # a template bug, not bad luck: fail loudly
        if answer not in context:
            raise RuntimeError(f"{kind}: answer {answer!r} missing from {context!r}")
    picked = rng.sample(facts, min(len(facts), rng.randint(4, 6)))
    questions = [Question(rng.choice(qs), answer) for answer, qs in picked]
    return title, context, questions


def generate_passages(n: int, seed: int = 0) -> list[Passage]:
    """`n` passages of invented facts, each with 4-6 closed-book questions; deterministic in seed."""
    passages: list[Passage] = []
    titles: set[str] = set()
    for i in range(n):
        kind = kind_for(seed, i)
        for attempt in range(100):
            rng = random.Random(f"fictional:{seed}:{i}:{attempt}")
            title, context, questions = _make_passage(kind, rng)
            if title not in titles:
                break
        else:  # pragma: no cover - ~10^6 names per kind make this unreachable in practice
            raise RuntimeError(f"could not find a fresh title for passage {i}")
        titles.add(title)
        passages.append(Passage(title=title, context=context, questions=questions,
                                uid=f"fictional-{seed}#{i}"))
    return passages
