"""Text work behind the bleed measure, no model involved: the names a learned content introduces, and
the questions on which those names must NOT turn up in an answer.

An edit "bleeds" when its new facts leak into answers about other subjects: after learning that a
made-up town's mayor is Orin Tallow, the model names the town as the capital of France or Tallow as
the author of Romeo and Juliet. Bleed questions probe this three ways:
- `template`: the content's own probe questions with their subject swapped for other subjects of a
  similar kind from the bank ("Who is the mayor of Vellmora?" -> "Who is the mayor of Lisbon?");
- `relation`: bank questions whose relation a word of the content evokes (mayor -> leader_of, town ->
  capital_of, wrote -> author_of, ...);
- `category`: a fixed small sample of the bank's questions in the categories those relations come from.
No bleed question ever mentions a name of the content itself.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from seal.data.passage import Question
from seal.eval.locality_bank import BankRecord, entities_of_kind

# words that may open a capitalised run without being part of a name
_STOP = frozenset(
    "who whom whose what which where when why how is are was were do does did can could will would should shall may "
    "might has have had the a an in on at of for to from by with and or but not it its he she they his her their this "
    "that these those there here name tell according i you we our your mr mrs ms dr yes no".split())
_CONNECT = frozenset({"of", "the", "de", "da", "van", "von", "del", "la", "le", "du", "bin"})  # inside names
_PLACE_CUE = frozenset({"of", "in", "from", "at", "near", "to", "into", "around", "across"})
_CITY_WORDS = frozenset({"town", "towns", "city", "cities", "village", "capital", "port", "mayor", "harbour"})
_COUNTRY_WORDS = frozenset({"country", "countries", "nation", "kingdom", "republic", "state", "island", "empire"})

# a word of the content -> the bank relations it evokes
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("capital", "city", "cities", "town", "towns", "village", "country", "nation"),
                    ("capital_of",)),
    **dict.fromkeys(("mayor", "leader", "president", "governor", "ruler", "king", "queen", "emperor", "chancellor",
                     "minister", "led", "leads", "elected", "rules", "ruled", "governs", "reign"), ("leader_of",)),
    **dict.fromkeys(("wrote", "written", "writes", "author", "book", "novel", "poem", "play", "writer", "story"),
                    ("author_of",)),
    **dict.fromkeys(("founded", "founder", "established", "company", "started"), ("founded_by",)),
    **dict.fromkeys(("located", "lies", "situated", "continent", "where", "region"), ("located_in", "continent_of")),
    **dict.fromkeys(("river", "rivers", "flows", "lake", "ocean", "sea"), ("river_through", "longest_river")),
    **dict.fromkeys(("discovered", "invented", "inventor", "scientist", "discovery", "invention"),
                    ("discovered_by", "invented_by")),
    **dict.fromkeys(("painted", "painter", "artist", "painting"), ("painted_by",)),
    **dict.fromkeys(("composed", "composer", "music", "song", "opera"), ("composed_by",)),
    **dict.fromkeys(("language", "speak", "spoken", "speaks"), ("language_of",)),
    **dict.fromkeys(("currency", "money", "coin", "coins"), ("currency_of",)),
    **dict.fromkeys(("year", "born", "built", "founded", "war"), ("year_of",)),
}


@dataclass(frozen=True)
class BleedQuestion:
    question: str
    source: str  # template | relation | category
    relation: str = ""
    subject: str = ""
    gold: str = ""  # the bank's answer ("" for a template question: nobody knows its answer)


def as_questions(probes: Iterable) -> list[Question]:
    """`Question`s from `Question`s or (question, answer) pairs."""
    out = []
    for p in probes:
        out.append(p if isinstance(p, Question) else Question(str(p[0]), str(p[1])))
    return out


def name_spans(text: str) -> list[str]:
    """Runs of capitalised words ("Orin Tallow", "Bank of Vellmora"), without leading question words
    or articles; a run ends at punctuation. Possessive 's is dropped."""
    spans, cur = [], []

    def close():
        while cur and (cur[-1].lower() in _CONNECT):
            cur.pop()
        if cur:
            spans.append(" ".join(cur))
        cur.clear()

    for raw in text.split():
        word = raw.strip("\"'()[]{}“”‘’")
        ends = bool(re.search(r"[.,;:!?\"”)\]]$", raw)) and not re.fullmatch(r"[A-Z]\.", word)
        if not re.fullmatch(r"[A-Z]\.", word):  # an initial keeps its period
            word = re.sub(r"(?:'s|’s)?[.,;:!?]*$", "", word)
        opens = word[:1].isupper() and (cur or word.lower() not in _STOP)
        if word and (opens or cur and word.lower() in _CONNECT):
            cur.append(word)
        else:
            close()
        if ends:
            close()
    close()
    return list(dict.fromkeys(spans))


def mentions(text: str, name: str) -> bool:
    """`name` occurs in `text` as a whole word or phrase, ignoring case."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def mentions_any(text: str, names: Iterable[str]) -> bool:
    return any(mentions(text, n) for n in names)


def _bank_text(bank: Sequence[BankRecord]) -> str:
    return "\n".join(f"{r.question}\n{r.subject}\n" + "\n".join(r.golds) for r in bank)


def new_entities(probes: Iterable, bank: Sequence[BankRecord], common: Callable[[str], bool] | None = None
                 ) -> list[str]:
    """The names the content brings: capitalised spans of its probe questions and answers, and answers
    that are numbers of three or more digits (years, amounts), minus anything the bank mentions. The
    words of a multi-word name count alone too ("Tallow" still names Orin Tallow), unless `common`
    (`common_words`) says the word is ordinary English: "Bridge" of "Orrel Bridge" would otherwise
    count every answer that mentions a bridge as bleed."""
    qs = as_questions(probes)
    found: dict[str, None] = {}
    for q in qs:
        for span in name_spans(q.question) + name_spans(q.answer):
            found.setdefault(span, None)
        number = q.answer.strip().rstrip(".")
        if re.fullmatch(r"\d{3,}", number):
            found.setdefault(number, None)
    for span in list(found):
        for word in span.split() if len(span.split()) > 1 else ():
            if len(word) >= 4 and word.lower() not in _CONNECT and not (common and common(word)):
                found.setdefault(word, None)
    text = _bank_text(bank)
    return [e for e in found if len(e) >= 2 and not mentions(text, e)]


def common_words(tok) -> Callable[[str], bool]:
    """Whether a word is ordinary English, by the model's own vocabulary: its lower-case form after a space
    is one token (" bridge", " kettle"; not " tallow", " vellmora"). A tokenizer's single-token words are
    the frequent words of its training text, which is the sense needed here."""
    def common(word: str) -> bool:
        return len(tok(" " + word.lower(), add_special_tokens=False)["input_ids"]) == 1
    return common


def _kind(span: str, question: str, person_answers: set[str]) -> str:
    """Guess whether a span of a probe question names a person or a place."""
    if span in person_answers:
        return "person"
    before = question[:question.find(span)].lower().split()
    if before and before[-1] == "the":
        before.pop()
    if before and before[-1] in _PLACE_CUE:
        return "place"
    return "person" if len(span.split()) >= 2 else "place"


def _template_questions(qs: list[Question], bank: Sequence[BankRecord], own: list[str], rng: random.Random,
                        per_probe: int) -> list[BleedQuestion]:
    person_answers = {s for q in qs if q.question.lower().startswith("who") for s in name_spans(q.answer)}
    words = set(re.findall(r"[a-z]+", " ".join(f"{q.question} {q.answer}" for q in qs).lower()))
    city, country = words & _CITY_WORDS, words & _COUNTRY_WORDS
    places = ["city"] if city and not country else ["country"] if country and not city else ["city", "country"]
    pools = {"place": [e for kind in places for e in entities_of_kind(list(bank), kind)],
             "person": entities_of_kind(list(bank), "person")}
    pools = {kind: [e for e in pool if not mentions_any(e, own)] for kind, pool in pools.items()}
    out = []
    for q in qs:
        spans = name_spans(q.question)
        if not spans:
            continue
        kinds = [_kind(s, q.question, person_answers) for s in spans]
        picks = {kind: rng.sample(pools[kind], min(len(pools[kind]), per_probe)) for kind in set(kinds)}
        for i in range(per_probe):
            text, subjects = q.question, []
            for span, kind in zip(spans, kinds):
                if i >= len(picks[kind]):
                    break
                other = picks[kind][(i + spans.index(span)) % len(picks[kind])]
                text = re.sub(rf"(?<!\w){re.escape(span)}(?!\w)", other, text)
                subjects.append(other)
            else:
                out.append(BleedQuestion(text, "template", subject=", ".join(subjects)))
    return out


def content_relations(texts: Iterable[str]) -> list[str]:
    """Bank relations the words of `texts` evoke (RELATION_WORDS), in order of first mention."""
    out: dict[str, None] = {}
    for t in texts:
        for w in re.findall(r"[a-z]+", t.lower()):
            for rel in RELATION_WORDS.get(w, ()):
                out.setdefault(rel, None)
    return list(out)


def bleed_questions(content_probes: Iterable, bank: Sequence[BankRecord], n: int = 40, seed: int = 0,
                    content: str = "", fixed: int = 8, per_probe: int = 6) -> list[BleedQuestion]:
    """Up to `n` bleed questions for content whose probes are `content_probes` (`Question`s or
    (question, answer) pairs; `content`, its text, adds relation words). Sources are taken in turn,
    template, relation, category (at most `fixed` of the last), each in a `seed`-fixed order."""
    qs = as_questions(content_probes)
    own = list(dict.fromkeys(s for q in qs for s in name_spans(q.question) + name_spans(q.answer)))
    own += [e for e in new_entities(qs, bank) if e not in own]
    rng = random.Random(seed)
    template = _template_questions(qs, bank, own, rng, per_probe)
    relations = content_relations([content] + [q.question for q in qs] + [q.answer for q in qs])
    usable = [r for r in bank if not mentions_any(f"{r.question} {r.subject}", own)]
    related = [r for r in usable if r.relation in relations]
    rng.shuffle(related)
    counts: dict[str, int] = {}
    for r in related:
        counts[r.category] = counts.get(r.category, 0) + 1
    top = sorted(counts, key=lambda c: -counts[c])[:2]
    chosen = {r.id for r in related}
    pool = [r for r in usable if r.id not in chosen and (not top or r.category in top)]
    category = rng.sample(pool, min(fixed, len(pool)))
    sources = [template,
               [BleedQuestion(r.question, "relation", r.relation, r.subject, r.answer) for r in related],
               [BleedQuestion(r.question, "category", r.relation, r.subject, r.answer) for r in category]]
    out: list[BleedQuestion] = []
    seen: set[str] = set()
    iters = [iter(s) for s in sources]
    while len(out) < n and iters:
        for it in list(iters):
            item = next(it, None)
            if item is None:
                iters.remove(it)
            elif item.question not in seen and len(out) < n:
                seen.add(item.question)
                out.append(item)
    return out
