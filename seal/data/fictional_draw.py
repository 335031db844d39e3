"""Drawing the values of one fictional passage (`Draw`: distinct names, places, years, numbers) and
the small helpers the fact templates (`seal.data.fictional_templates`) write sentences with."""

from __future__ import annotations

import random

from seal.data.fictional_vocab import END_CODAS, MID_CODAS, ONSETS, PLACE_SUFFIXES, REGION_WORDS, VOWELS


class Draw:
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
            onset = "" if k == 0 and rng.random() < 0.15 else rng.choice(ONSETS)
            coda = rng.choice(END_CODAS if k == n - 1 else MID_CODAS)
            parts.append(onset + rng.choice(VOWELS) + coda)
        return "".join(parts).capitalize()

    def pick(self, options):
        return self.fresh(lambda: self.rng.choice(options))

    def name(self, form: str = "{}") -> str:
        return self.fresh(lambda: form.format(self.word()))

    def person(self) -> str:
        return self.fresh(lambda: f"{self.word(2)} {self.word(self.rng.choice((2, 2, 3)))}")

    def place(self) -> str:
        def make():
            suffix = self.rng.choice(PLACE_SUFFIXES)
            return self.word(2) + suffix if suffix else self.word()
        return self.fresh(make)

    def region(self) -> str:
        return self.fresh(lambda: f"{self.word()} {self.rng.choice(REGION_WORDS)}")

    def year(self, lo: int, hi: int) -> int:
        return self.fresh(lambda: self.rng.randint(lo, hi))

    def number(self, lo: int, hi: int, step: int = 1) -> str:
        return self.fresh(lambda: f"{self.rng.randrange(lo, hi + 1, step):,}")

    def pronouns(self) -> tuple[str, str]:
        return self.rng.choice((("he", "his"), ("she", "her")))


def fact(answer, *questions: str) -> tuple[str, tuple[str, ...]]:
    return str(answer), questions


def say(d: Draw, variants: list[str], *facts) -> tuple[str, list]:
    """One sentence (a phrasing drawn from `variants`) and the facts it states."""
    return d.rng.choice(variants), list(facts)


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
