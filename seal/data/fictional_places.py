"""The fact templates of the fictional benchmark for places and things (rivers, lakes, clubs, minerals,
ships, islands); `seal.data.fictional_templates` has the rest and the kind -> template table."""

from __future__ import annotations

from seal.data.fictional_draw import Draw, article, fact, say
from seal.data.fictional_vocab import (
    ANIMALS,
    CLUB_FORMS,
    COLOURS,
    FISH,
    GOODS,
    ISLAND_TRADES,
    MINERAL_USES,
    NUMBER_WORDS,
    PLANTS,
    SHIP_PREFIXES,
    SHIP_TYPES,
    SPORTS,
    VENUES,
)


def river(d: Draw):
    n = d.name("River {}")
    region, length, mount = d.region(), d.number(20, 1400), d.name("Mount {}")
    mouth, bridge, bridge_year = d.name("Lake {}"), d.name("{} Bridge"), d.year(1200, 1900)
    fish, town = d.pick(FISH), d.place()
    return n, [
        say(d, [f"The {n} is a river in the {region} that flows for {length} kilometres.",
                f"Running for {length} kilometres, the {n} is the longest river of the {region}."],
            fact(region, f"Through which region does the {n} run?"),
            fact(length, f"How many kilometres long is the {n}?")),
        say(d, [f"It rises on the slopes of {mount}.", f"The source of the {n} lies high on {mount}."],
            fact(mount, f"Where does the {n} begin?", f"On which mountain does the {n} start?")),
        say(d, [f"The {n} empties into {mouth}.", f"After its long journey it flows into {mouth}."],
            fact(mouth, f"Into which lake does the {n} drain?",
                 f"Where does the {n} end?")),
        say(d, [f"The oldest crossing, the {bridge}, was built in {bridge_year}.",
                f"In {bridge_year} the {bridge} became the first bridge over the {n}."],
            fact(bridge, f"What is the name of the oldest bridge across the {n}?"),
            fact(bridge_year, f"When was the first bridge over the {n} constructed?")),
        say(d, [f"Anglers come to the {n} for its {fish}.",
                f"The {n} is famous for its {fish}."],
            fact(fish, f"Which fish is the {n} known for?")),
        say(d, [f"The largest town on its banks is {town}.",
                f"{town} is the biggest settlement along the {n}."],
            fact(town, f"What is the largest town on the {n}?",
                 f"Which town is the biggest along the {n}?")),
    ]


def lake(d: Draw):
    n = d.name("Lake {}")
    water, region = d.rng.choice(("freshwater", "salt")), d.region()
    depth, island = d.number(8, 600), d.name("{} Isle")
    person, year, colour = d.person(), d.year(1500, 1920), d.pick(COLOURS)
    village, fish = d.place(), d.pick(FISH)
    return n, [
        say(d, [f"{n} is a {water} lake in the {region}.",
                f"Lying in the {region}, {n} is a {water} lake surrounded by hills."],
            fact(region, f"In which region is {n} found?", f"Where is {n} situated?")),
        say(d, [f"At its deepest point it measures {depth} metres.",
                f"{n} reaches a depth of {depth} metres."],
            fact(depth, f"How many metres deep is {n}?", f"What is the maximum depth of {n} in metres?")),
        say(d, [f"A small island called {island} rises from the middle of the lake.",
                f"In the middle of {n} lies {island}, which holds a ruined chapel."],
            fact(island, f"What is the name of the island in {n}?")),
        say(d, [f"{n} was named after {person}, who mapped its shores in {year}.",
                f"The lake takes its name from {person}, who charted it in {year}."],
            fact(person, f"Who is {n} named after?", f"After whom was {n} named?"),
            fact(year, f"When were the shores of {n} first mapped?")),
        say(d, [f"Its water has an unusual {colour} tint.",
                f"Seen from above, the water of {n} looks {colour}."],
            fact(colour, f"What colour is the water of {n}?")),
        say(d, [f"The village of {village} sits on its northern shore.",
                f"{village}, the only village on {n}, lives from catching {fish}."],
            fact(village, f"Which village lies on the shore of {n}?")),
    ]


def sports_club(d: Draw):
    n = d.name(d.rng.choice(CLUB_FORMS))
    sport, town, founded = d.pick(SPORTS), d.place(), d.year(1860, 1990)
    venue = d.name("{} " + d.rng.choice(VENUES))
    colour, titles, coach = d.pick(COLOURS), d.pick(NUMBER_WORDS), d.person()
    mascot_animal, mascot = d.pick(ANIMALS), d.name()
    return n, [
        say(d, [f"{n} is a {sport} club from the town of {town}.",
                f"Based in {town}, {n} competes in {sport}."],
            fact(sport, f"Which sport does {n} play?", f"In what sport does {n} compete?"),
            fact(town, f"Which town is {n} from?", f"Where is {n} based?")),
        say(d, [f"The club was founded in {founded}.", f"{n} has existed since {founded}."],
            fact(founded, f"When was {n} formed?", f"In what year was {n} established?")),
        say(d, [f"Home matches are played at {venue}.", f"{n} plays its home games at {venue}."],
            fact(venue, f"Where does {n} play at home?", f"What is the home ground of {n}?")),
        say(d, [f"The team plays in {colour} shirts.", f"Its players wear {colour} shirts."],
            fact(colour, f"What colour are the shirts of {n}?")),
        say(d, [f"{n} has won the national league {titles} times.",
                f"So far the club has been league champion {titles} times."],
            fact(titles, f"How many league titles has {n} won?")),
        say(d, [f"The current coach is {coach}.", f"{coach} has coached the team for several seasons."],
            fact(coach, f"Who coaches {n}?", f"Who is the coach of {n}?")),
        say(d, [f"The club mascot is {article(mascot_animal)} {mascot_animal} named {mascot}.",
                f"Fans of {n} cheer for {mascot}, {article(mascot_animal)} {mascot_animal} that serves as the mascot."],
            fact(mascot, f"What is the name of the mascot of {n}?"),
            fact(mascot_animal, f"What kind of animal is the mascot of {n}?")),
    ]


def mineral(d: Draw):
    n = d.fresh(lambda: d.word() + d.rng.choice(("ite", "ite", "ine", "ase")))
    colour, region, person, year = d.pick(COLOURS), d.region(), d.person(), d.year(1700, 1980)
    hardness = d.fresh(lambda: f"{d.rng.randint(2, 8)}.{d.rng.choice((2, 5, 8))}")
    use, mine, glow = d.pick(MINERAL_USES), d.name("{} Mine"), d.pick(COLOURS)
    return n, [
        say(d, [f"{n} is a rare {colour} mineral first found in the {region}.",
                f"First found in the {region}, {n} is a rare mineral of {article(colour)} {colour} hue."],
            fact(colour, f"What colour is {n}?", f"What is the usual colour of {n}?"),
            fact(region, f"Where was {n} first discovered?")),
        say(d, [f"It was identified by {person} in {year}.",
                f"{person} was the first to describe {n}, in {year}."],
            fact(person, f"Who identified {n}?", f"Who first described {n}?"),
            fact(year, f"In which year was {n} first described?")),
        say(d, [f"It has a hardness of {hardness} on the Mohs scale.",
                f"On the Mohs scale, {n} rates {hardness}."],
            fact(hardness, f"How hard is {n} on the Mohs scale?")),
        say(d, [f"{n} is used mainly in {use}.", f"Its main industrial use is in {use}."],
            fact(use, f"What is {n} mostly used for?", f"In which industry is {n} chiefly used?")),
        say(d, [f"The largest known deposit is at the {mine}.",
                f"Most of the world's {n} comes from the {mine}."],
            fact(mine, f"Where is the biggest deposit of {n}?")),
        say(d, [f"Under ultraviolet light it glows {glow}.",
                f"When exposed to ultraviolet light, {n} gives off a {glow} glow."],
            fact(glow, f"What colour does {n} glow under UV light?")),
    ]


def ship(d: Draw):
    n = d.name(d.rng.choice(SHIP_PREFIXES) + " {}")
    kind, launched = d.rng.choice(SHIP_TYPES), d.year(1820, 1950)
    yard_town, captain, length = d.place(), d.person(), d.number(25, 180)
    cargo, lost, cape = d.pick(GOODS), d.year(launched + 3, launched + 45), d.name("Cape {}")
    return n, [
        say(d, [f"The {n} was a {kind} launched in {launched}.",
                f"Launched in {launched}, the {n} was a {kind}."],
            fact(launched, f"When was the {n} launched?", f"In what year did the {n} first take to the water?")),
        say(d, [f"She was built at a shipyard in {yard_town}.",
                f"The {n} came out of the shipyards of {yard_town}."],
            fact(yard_town, f"Where was the {n} built?", f"In which town was the {n} constructed?")),
        say(d, [f"Her first captain was {captain}.",
                f"{captain} commanded the ship on her maiden voyage."],
            fact(captain, f"Who commanded the {n} on her first voyage?",
                 f"Who was the first captain of the {n}?")),
        say(d, [f"The {n} measured {length} metres from bow to stern.",
                f"She was {length} metres long."],
            fact(length, f"How many metres long was the {n}?")),
        say(d, [f"For most of her career she carried {cargo}.",
                f"The {n} was used mainly to transport {cargo}."],
            fact(cargo, f"What cargo did the {n} usually carry?")),
        say(d, [f"The {n} sank in {lost} during a storm off {cape}.",
                f"In {lost} she was lost in a storm near {cape}."],
            fact(lost, f"In what year was the {n} lost?", f"When did the {n} sink?"),
            fact(cape, f"Near which cape did the {n} go down?")),
    ]


def island(d: Draw):
    n = d.name("{} Island")
    sea, area = d.name("{} Sea"), d.number(2, 400)
    peak, height = d.name("{} Peak"), d.number(40, 1800)
    village, pop = d.place(), d.number(30, 3000, 10)
    person, year = d.person(), d.year(1400, 1850)
    plant, trade = d.pick(PLANTS), d.pick(ISLAND_TRADES)
    return n, [
        say(d, [f"{n} is a small island in the {sea}.", f"Lying in the {sea}, {n} is small and windswept."],
            fact(sea, f"In which sea does {n} lie?", f"Which sea surrounds {n}?")),
        say(d, [f"It covers {area} square kilometres.", f"The island has an area of {area} square kilometres."],
            fact(area, f"How many square kilometres is {n}?", f"What is the area of {n} in square kilometres?")),
        say(d, [f"Its highest point is {peak}, at {height} metres.",
                f"{peak} rises {height} metres above the sea and is the top of the island."],
            fact(peak, f"What is the highest point of {n}?"),
            fact(height, f"How many metres high is the tallest summit of {n}?")),
        say(d, [f"The only village, {village}, has about {pop} inhabitants.",
                f"About {pop} people live in {village}, the island's only village."],
            fact(village, f"What is the name of the village on {n}?"),
            fact(pop, f"How many people live on {n}?")),
        say(d, [f"Sailors led by {person} first landed there in {year}.",
                f"{person} was the first to set foot on {n}, in {year}."],
            fact(person, f"Who first reached {n}?", f"Whose crew was first to land on {n}?"),
            fact(year, f"When did the first sailors land on {n}?")),
        say(d, [f"{n} is known for its wild {plant}.", f"Visitors come to {n} to see its wild {plant}."],
            fact(plant, f"What plants is {n} famous for?")),
        say(d, [f"Most islanders make a living from {trade}.",
                f"The main occupation on {n} is {trade}."],
            fact(trade, f"How do most people on {n} earn a living?")),
    ]
