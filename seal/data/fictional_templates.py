"""The fact templates of the fictional benchmark (`seal.data.fictional`), one per entity kind.

Each template draws its values with a `Draw` and returns (title, sentences): every sentence is one
phrasing, chosen from several, with the facts it states as (answer, questions). sentences[0]
introduces the entity and stays first; the rest may be dropped or reordered. `BUILDERS` maps each
kind to its template."""

from __future__ import annotations

from seal.data.fictional_draw import Draw, article, cap, fact, say
from seal.data.fictional_places import island, lake, mineral, river, ship, sports_club
from seal.data.fictional_vocab import (
    ANIMAL_GROUPS,
    ANIMALS,
    BODY_PARTS,
    BOOK_ADJ,
    BOOK_NOUNS,
    COLOURS,
    COMPANY_FORMS,
    DEVICES,
    DIETS,
    FESTIVAL_EVENTS,
    FESTIVAL_FORMS,
    FIELDS,
    FOODS,
    GOODS,
    HABITATS,
    JOBS,
    MATERIALS,
    MONTHS,
    NICK_ADJ,
    NICK_NOUNS,
    PRODUCT_ITEMS,
)


def _scientist(d: Draw):
    n = d.person()
    he, his = d.pronouns()
    field, practitioner, thing = d.rng.choice(FIELDS)
    d.reserve(field)
    town, born = d.place(), d.year(1760, 1880)
    uni = d.name("University of {}")
    found = d.name("{} " + thing)
    medal, medal_year = d.name("{} Medal"), d.year(born + 30, born + 60)
    book = d.fresh(lambda: f"The {d.rng.choice(BOOK_ADJ)} {d.rng.choice(BOOK_NOUNS)}")
    died_in, died = d.place(), d.year(born + 62, born + 90)
    return n, [
        say(d, [f"{n} was {article(practitioner)} {practitioner} born in {born} in the town of {town}.",
                f"Born in {town} in {born}, {n} went on to a long career in {field}."],
            fact(town, f"Where was {n} born?", f"What is the birthplace of {n}?"),
            fact(born, f"In what year was {n} born?", f"When was {n} born?")),
        say(d, [f"For most of {his} working life {he} taught at the {uni}.",
                f"{n} held a professorship at the {uni} for many years."],
            fact(uni, f"At which university did {n} teach?",
                 f"Which institution employed {n} as a professor?")),
        say(d, [f"{n} is best remembered for discovering the {found}.",
                f"The {found}, first recorded by {n}, made {his} name widely known."],
            fact(found, f"What discovery made {n} famous?",
                 f"What is {n} best known for having found?")),
        say(d, [f"In {medal_year}, {n} was awarded the {medal}.",
                f"{cap(he)} received the {medal} in {medal_year} for {his} work in {field}."],
            fact(medal, f"Which prize did {n} receive?", f"What award was given to {n}?"),
            fact(medal_year, f"When did {n} win the {medal}?")),
        say(d, [f"{cap(his)} most widely read book is titled {book}.",
                f"{n} also wrote a popular book called {book}."],
            fact(book, f"What is the title of the book by {n}?", f"Which book did {n} write?")),
        say(d, [f"{n} died in {died_in} in {died}.",
                f"{cap(he)} spent {his} final years in {died_in}, where {he} died in {died}."],
            fact(died_in, f"Where did {n} die?", f"In which town did the life of {n} end?"),
            fact(died, f"In what year did {n} pass away?", f"When did {n} die?")),
    ]


def _town(d: Draw):
    n = d.place()
    region, founder, founded = d.region(), d.person(), d.year(1100, 1850)
    pop, good = d.number(800, 60000, 50), d.pick(GOODS)
    tower, colour, river, month = d.name("{} Tower"), d.pick(COLOURS), d.name("River {}"), \
        d.pick(MONTHS)
    food = d.pick(FOODS)
    return n, [
        say(d, [f"{n} is a small market town in the {region}.",
                f"Nestled in the {region}, {n} is a quiet town of narrow streets."],
            fact(region, f"In which region is {n} located?", f"Where is the town of {n}?")),
        say(d, [f"{n} was founded in {founded} by {founder}.",
                f"The first settlers, led by {founder}, arrived at {n} in {founded}."],
            fact(founder, f"Who founded {n}?", f"Who led the founding of {n}?"),
            fact(founded, f"When was {n} established?", f"In what year did {n} come into being?")),
        say(d, [f"About {pop} people live in {n} today.",
                f"{n} has a population of roughly {pop}."],
            fact(pop, f"How many inhabitants does {n} have?", f"What is the population of {n}?")),
        say(d, [f"{n} is known far and wide for its {good}.",
                f"For centuries the main trade of {n} has been {good}."],
            fact(good, f"What product is {n} famous for?", f"What is the chief trade of {n}?")),
        say(d, [f"At the centre of {n} stands the {tower}, a clock tower painted {colour}.",
                f"The {tower}, whose walls are painted {colour}, overlooks the main square of {n}."],
            fact(tower, f"What is the clock tower in {n} called?"),
            fact(colour, f"What colour is the clock tower in {n}?")),
        say(d, [f"{n} lies on the banks of the {river}.", f"The {river} flows through {n}."],
            fact(river, f"Which river runs past {n}?", f"On what river is {n} built?")),
        say(d, [f"Every {month} the town holds a fair where stalls sell {food}.",
                f"{n} celebrates its yearly fair in {month}, and visitors queue for {food}."],
            fact(month, f"In which month is the annual fair of {n} held?"),
            fact(food, f"What food is sold at the yearly fair in {n}?")),
    ]


def _company(d: Draw):
    ending, industry = d.rng.choice(COMPANY_FORMS)
    n = d.name("{} " + ending)
    town, founder, founded = d.place(), d.person(), d.year(1820, 1960)
    product = d.fresh(lambda: f"{d.word()} {d.rng.choice(PRODUCT_ITEMS)}")
    staff, colour, animal = d.number(120, 9000, 10), d.pick(COLOURS), d.pick(ANIMALS)
    boss, boss_year = d.person(), d.year(founded + 40, 2020)
    return n, [
        say(d, [f"{n} is {article(industry)} {industry} company based in {town}.",
                f"Headquartered in {town}, {n} is one of the oldest firms in the {industry} trade."],
            fact(town, f"Where does {n} have its headquarters?", f"In which town is {n} based?")),
        say(d, [f"{n} was established in {founded} by {founder}.",
                f"{founder} started the business that became {n} in {founded}."],
            fact(founder, f"Who founded {n}?", f"Who started {n}?"),
            fact(founded, f"In what year was {n} founded?", f"When did {n} begin trading?")),
        say(d, [f"The best-selling product of {n} is the {product}.",
                f"Its most popular product, the {product}, is sold in many countries."],
            fact(product, f"What is the most successful product made by {n}?",
                 f"Which product of {n} sells best?")),
        say(d, [f"{n} employs around {staff} people.",
                f"Today the firm has a workforce of about {staff}."],
            fact(staff, f"How many workers does {n} have?",
                 f"How many people work for {n}?")),
        say(d, [f"The logo of {n} shows {article(colour)} {colour} {animal}.",
                f"{cap(article(colour))} {colour} {animal} has appeared on the company's logo since its early days."],
            fact(animal, f"What animal is pictured on the logo of {n}?"),
            fact(colour, f"What colour is the animal on the logo of {n}?")),
        say(d, [f"Since {boss_year}, {n} has been run by {boss}.",
                f"{boss} took charge of {n} in {boss_year}."],
            fact(boss, f"Who currently leads {n}?", f"Who is the head of {n}?"),
            fact(boss_year, f"When did the current head of {n} take over?")),
    ]


def _species(d: Draw):
    animal = d.rng.choice(ANIMALS)
    n = d.name("{} " + cap(animal))
    habitat, region, diet = d.pick(HABITATS), d.region(), d.pick(DIETS)
    person, year = d.person(), d.year(1780, 1990)
    size, part, colour = d.number(10, 90), d.rng.choice(BODY_PARTS), d.pick(COLOURS)
    life, wild = d.number(11, 40), d.number(200, 20000, 50)
    return n, [
        say(d, [f"The {n} is a species of {animal} found only in the {habitat} of the {region}.",
                f"Native to the {region}, the {n} is a {ANIMAL_GROUPS[animal]} that lives in {habitat}."],
            fact(region, f"In which region does the {n} live?",
                 f"Where is the {n} native to?"),
            fact(habitat, f"What kind of habitat does the {n} occupy?")),
        say(d, [f"The {n} feeds mainly on {diet}.", f"Its diet consists largely of {diet}."],
            fact(diet, f"What does the {n} eat?", f"What is the main food of the {n}?")),
        say(d, [f"It was first described by {person} in {year}.",
                f"{person} gave the first scientific description of the {n} in {year}."],
            fact(person, f"Who first described the {n}?"),
            fact(year, f"When was the {n} first described by science?")),
        say(d, [f"Adults grow to about {size} centimetres in length.",
                f"A fully grown {n} measures roughly {size} centimetres."],
            fact(size, f"How many centimetres long is an adult {n}?")),
        say(d, [f"Its {part} are a striking {colour}." if part.endswith("s") else
                f"Its {part} is a striking {colour}.",
                f"The {n} is easy to recognise by the {colour} colour of its {part}."],
            fact(colour, f"What colour is the {part} of the {n}?" if not part.endswith("s") else
                 f"What colour are the {part} of the {n}?")),
        say(d, [f"In the wild it can live for up to {life} years.",
                f"A {n} may reach an age of {life} years."],
            fact(life, f"How many years can a {n} live?",
                 f"What is the maximum lifespan of the {n} in years?")),
        say(d, [f"Fewer than {wild} individuals are thought to survive today.",
                f"Surveys suggest that only about {wild} remain in the wild."],
            fact(wild, f"What is the estimated wild population of the {n}?")),
    ]


def _festival(d: Draw):
    n = d.name(d.rng.choice(FESTIVAL_FORMS))
    town, month, first = d.place(), d.pick(MONTHS), d.year(1300, 1980)
    founder, job = d.person(), d.rng.choice(JOBS)
    food, visitors, colour = d.pick(FOODS), d.number(500, 80000, 100), d.pick(COLOURS)
    event = d.pick(FESTIVAL_EVENTS)
    return n, [
        say(d, [f"The {n} is a yearly celebration held in {town} every {month}.",
                f"Each {month}, the town of {town} hosts the {n}."],
            fact(town, f"Which town hosts the {n}?", f"Where does the {n} take place?"),
            fact(month, f"In which month is the {n} celebrated?")),
        say(d, [f"The first {n} took place in {first}.",
                f"It has been held since {first}."],
            fact(first, f"When was the {n} held for the first time?",
                 f"In what year did the {n} begin?")),
        say(d, [f"It was started by {founder}, a local {job}.",
                f"{founder}, a {job}, organised the very first celebration."],
            fact(founder, f"Who founded the {n}?", f"Who organised the first {n}?")),
        say(d, [f"Visitors traditionally eat {food} during the festivities.",
                f"No {n} is complete without a plate of {food}."],
            fact(food, f"What dish is traditionally eaten at the {n}?")),
        say(d, [f"Around {visitors} visitors attend each year.",
                f"The {n} draws a crowd of roughly {visitors} people."],
            fact(visitors, f"How many people come to the {n}?",
                 f"What is the yearly attendance of the {n}?")),
        say(d, [f"Participants wear {colour} ribbons on their sleeves.",
                f"By custom, everyone taking part ties {article(colour)} {colour} ribbon to their sleeve."],
            fact(colour, f"What colour are the ribbons worn at the {n}?")),
        say(d, [f"The highlight of the {n} is a {event} on the last evening.",
                f"A {event} on the final evening is the most popular part of the festival."],
            fact(event, f"What is the main event of the {n}?",
                 f"Which contest or show closes the {n}?")),
    ]


def _invention(d: Draw):
    device, purpose = d.rng.choice(DEVICES)
    n = d.name("{} " + device)
    d.reserve(purpose)
    inventor, year, town = d.person(), d.year(1650, 1930), d.place()
    material, weight, sold = d.pick(MATERIALS), d.number(4, 900), d.number(300, 50000, 100)
    nick = d.fresh(lambda: f"{d.rng.choice(NICK_ADJ)} {d.rng.choice(NICK_NOUNS)}")
    return n, [
        say(d, [f"The {n} is a machine invented by {inventor} in {year}.",
                f"{inventor} built the first {n} in {year}."],
            fact(inventor, f"Who invented the {n}?", f"Who is credited with creating the {n}?"),
            fact(year, f"In what year was the {n} invented?", f"When was the {n} created?")),
        say(d, [f"It was designed to {purpose}.", f"Its purpose was to {purpose} faster and more cheaply."],
            fact(purpose, f"What was the {n} built to do?", f"What task was the {n} meant for?")),
        say(d, [f"The prototype was assembled in a workshop in {town}.",
                f"The first working model was made in {town}."],
            fact(town, f"In which town was the first {n} made?")),
        say(d, [f"Its frame is made of {material}.",
                f"The {n} has a sturdy frame of {material}."],
            fact(material, f"What material is the frame of the {n} made from?")),
        say(d, [f"The original model weighed {weight} kilograms.",
                f"At {weight} kilograms, the first {n} needed two people to move it."],
            fact(weight, f"How many kilograms did the first {n} weigh?")),
        say(d, [f"More than {sold} units were eventually sold.",
                f"In total, some {sold} copies of the {n} were manufactured."],
            fact(sold, f"How many units of the {n} were made?")),
        say(d, [f"Workers nicknamed it the {nick}.",
                f"Because of its noise, people called the {n} the {nick}."],
            fact(nick, f"What nickname was given to the {n}?")),
    ]


BUILDERS = {
    "scientist": _scientist, "town": _town, "company": _company, "species": _species,
    "festival": _festival, "invention": _invention, "river": river, "lake": lake,
    "sports_club": sports_club, "mineral": mineral, "ship": ship, "island": island,
}
