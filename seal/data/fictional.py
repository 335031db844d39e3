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

The word tables are in `seal.data.fictional_vocab`, the drawing of values in `seal.data.fictional_draw`
and the fact templates of each kind in `seal.data.fictional_templates`; this module deals out the
kinds and assembles the passages and their questions.
"""

from __future__ import annotations

import random

from seal.data.fictional_draw import Draw
from seal.data.fictional_templates import BUILDERS
from seal.data.passage import Passage, Question

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

assert set(BUILDERS) == set(_FILLERS) == set(KINDS)


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
    d = Draw(rng)
    title, sentences = BUILDERS[kind](d)
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
