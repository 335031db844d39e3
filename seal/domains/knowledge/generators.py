"""Self-edits made of several model calls, and what every self-edit cost to generate.

A single-call format (`implications`, `rewrite`, ...) is one prompt -> one completion. The formats here
ask the model several times per self-edit and join the answers, one part per call, by blank lines:

  entigraph       call 1 lists the passage's entities; then, for seeded random pairs (and, with
                  `generators.triples`, triples) of them, one call each on how they relate according
                  to the passage, at most `generators.max_calls` such calls
  active_reading  call 1 proposes `generators.strategies` study strategies for the passage; then one
                  call per strategy applies it to the passage
  prompt_set      one call per augmentation prompt in `generators.prompt_set` (paraphrase, summary, quiz,
                  explain to a child, timeline, key facts, dialogue: templates named `set_*`)

Parts and documents: a part is stored with its blank lines collapsed (every run of newlines holding only
whitespace becomes one newline: a quiz "Q: What?\n\nA: radium" is stored as "Q: What?\nA: radium"),
so the self-edit's only blank lines are those between parts and splitting it at blank lines gives back
exactly its parts. Its training documents follow `self_edit.generators.split`: `paragraphs` (the
default) gives one document per part (a leading filler line such as "Sure, here is a summary:" dropped;
a part that is only filler gives none), `lines` one per non-empty line, `whole` the self-edit as one
document. `self_edit.max_segments` caps single-call completions only: a multi-call self-edit's size is
set by its generator's settings (max_calls, strategies, prompt_set, token_budget), so every part is
kept. `ki_eval` (one inner loop per self-edit) and `ki_cpt` (the self-edits pooled into one update)
make the same documents from it (`seal.domains.knowledge.self_edit.completion_to_documents`).

List parsing (entities, strategies; `parse_list`): one item per line, a leading label the model echoes
("Entities: ...", "Study strategies: ...") stripped. Entities may also come several to a line, split at
", " only when every piece looks like a name (so "Washington, D.C." stays whole); strategies are
sentences and are never split at commas.

Seeds: every call of one stage (say all the relation calls) of all the self-edits being drawn together
is one seeded generate call, its seed derived from the chunk's seed and the stage's name, so a resumed
or recomputed chunk gives identical text. With `generators.token_budget` > 0 a self-edit stops issuing
calls once its generated tokens reach the budget; the stage's calls then go in waves (the i-th call of
every self-edit together), each wave one generate call seeded from the stage's name and the wave's
index, so the budget is checked before each wave. This changes the batches and their seeds, so ANY
budget > 0, even one that never binds, gives different text from token_budget=0 (the same settings
and seed always give the same text). Compare formats with or without a budget, not across the two.

Cost: every self-edit, of every format, records its generated tokens (the sampled token ids, the EOS
the model sampled included), its number of calls, and seconds: each batch's wall time shared among the
self-edits in it in proportion to the tokens each generated there (evenly when none generated any).

Add a format: write `(drafts: list[Draft], stages: Stages, g: GeneratorConfig) -> None`, which fills each
draft's `parts` (or sets `why` when there is nothing to say), put it in GENERATORS, and optionally list
the templates it needs in TEMPLATES_NEEDED so that a run checks them before loading any model.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from math import comb

from seal.data.passage import Passage
from seal.domains.knowledge.directive import DIRECTIVE_FORMATS
from seal.domains.knowledge.self_edit import (
    FORMATS,
    MODEL_FORMATS,
    GeneratorConfig,
    SelfEditConfig,
    SelfEditError,
    check_format,
)
from seal.infra.config import ConfigError, derive_seed

# raw prompts, seed, progress label -> (text, sampled token ids) per prompt, in order
Generate = Callable[[list[str], int, str | None], list[tuple[str, list[int]]]]


@dataclass(frozen=True)
class GeneratedEdit:
    """One self-edit and what it cost to generate."""
    text: str
    tokens: int = 0  # generated token ids over all its calls
    calls: int = 0  # model calls
    seconds: float = 0.0  # its share of the batches' wall time (module docstring)
    why: str | None = None  # why there is no text to train on (e.g. fewer than 2 entities), else None

    def cost(self) -> dict:
        return {"tokens": self.tokens, "calls": self.calls, "seconds": round(self.seconds, 4)}


@dataclass
class Spent:
    tokens: int = 0
    calls: int = 0
    seconds: float = 0.0


@dataclass
class Draft(Spent):
    """A self-edit being generated: its passage, its sample index, its seeded random source, its parts."""
    passage: Passage = field(default_factory=lambda: Passage("", "", []))
    sample: int = 0
    rng: random.Random = field(default_factory=random.Random)
    parts: list[str] = field(default_factory=list)
    why: str | None = None


class Stages:
    """Runs the stages of one chunk's self-edits: each stage one seeded generate call (or one per wave
    under a token budget), the tokens, calls and seconds charged to the drafts that asked."""

    def __init__(self, generate: Generate, fmt: str, seed: int, cfg: SelfEditConfig, desc: str | None = None):
        self.generate, self.fmt, self.seed, self.cfg, self.desc = generate, fmt, seed, cfg, desc

    def prompt(self, template: str, passage: Passage, **extra) -> str:
        if template not in self.cfg.templates:
            raise SelfEditError(f"self_edit.templates has no prompt '{template}' (format {self.fmt})")
        return self.cfg.templates[template].format(title=passage.title, context=passage.context, **extra)

    def run(self, stage: str, requests: list[tuple[Draft, str]]) -> list[str | None]:
        """The completion of each (draft, raw prompt) request, or None where the draft's token budget
        stopped it before the call was issued."""
        budget = self.cfg.generators.token_budget
        out: list[str | None] = [None] * len(requests)
        if budget > 0:  # wave w: the w-th request of every draft
            index: dict[int, int] = {}
            waves: list[list[int]] = []
            for i, (d, _) in enumerate(requests):
                w = index[id(d)] = index.get(id(d), -1) + 1
                if w == len(waves):
                    waves.append([])
                waves[w].append(i)
        else:
            waves = [list(range(len(requests)))]
        for w, wave in enumerate(waves):
            live = [i for i in wave if budget <= 0 or requests[i][0].tokens < budget]
            if not live:
                continue
            seed = derive_seed(self.seed, stage, *([w] if budget > 0 else []))
            desc = f"{self.desc or self.fmt}: {stage}" + (f" ({w + 1})" if budget > 0 else "")
            start = time.perf_counter()
            results = self.generate([requests[i][1] for i in live], seed, desc)
            charge([requests[i][0] for i in live], [ids for _, ids in results], time.perf_counter() - start)
            for i, (text, _) in zip(live, results):
                out[i] = text
        return out


def charge(drafts: list[Spent], ids: list[list[int]], seconds: float) -> None:
    """One call each, its tokens, and the batch's seconds shared by token count (evenly if none)."""
    total = sum(len(x) for x in ids)
    for d, x in zip(drafts, ids):
        d.calls += 1
        d.tokens += len(x)
        d.seconds += seconds * (len(x) / total if total else 1 / len(drafts))


_ITEM = re.compile(r"^\s*(?:[-*+\u2022>]+|\(?\d{1,3}[.):])\s+")  # bullets and numbers; not "J." (an initial)
# a label before the list on its line, such as the prompt's cue echoed: "Entities: ...", "**Study strategies**: ..."
_LABEL = re.compile(r"^(?:(?:the|key|main|important|named|relevant|study|suggested|possible|some)\s+)*"
                    r"(?:entities|entity list|entity|names|strategies|strategy|list|answer)"
                    r"\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*", re.IGNORECASE)
# a comma piece that continues a name rather than starting one: "Washington, D.C.", "Smith, Jr.", "Austin, TX"
_SUFFIX = re.compile(r"^(?:(?:[A-Za-z]\.){1,4}|(?i:jr|sr|inc|ltd|co|corp|llc|plc|phd)\.?|[IVX]{1,4}|[A-Z]{2})$")
_VERB = re.compile(r"\b(?:is|was|are|were|has|have|had|be|been|will|would|can|could)\b", re.IGNORECASE)
# "D.C.", "U.S.", "Jr.": the final dot is part of the name
_ABBREVIATION_END = re.compile(r"(?:(?:\b[A-Za-z]\.){2,}|\b(?i:jr|sr|inc|ltd|co|corp)\.)$")


def _clean(line: str) -> str:
    """A list line without its marker, emphasis and leading label."""
    item = _ITEM.sub("", line.strip()).strip().strip("*_`\"'").strip()
    return _LABEL.sub("", item).strip().strip("*_`\"'").strip()


def _comma_pieces(line: str) -> list[str] | None:
    """The names of a line holding several ("Marie Curie, Pierre Curie and radium" is not split at "and";
    "A, B, and C" is), or None when the line is one name with a comma ("Washington, D.C."), prose (a
    piece of more than 5 words, or with a verb such as "was"), or holds no comma. Digits around a comma
    ("1,000") do not split."""
    pieces = [x.strip().strip("*_`\"'").strip() for x in re.split(r"(?<!\d),|,(?!\d)", line)]
    pieces = [x for x in pieces if x]
    if len(pieces) < 2:
        return None
    pieces[-1] = re.sub(r"^(?:and|or|&)\s+", "", pieces[-1], flags=re.IGNORECASE)
    if all(0 < len(x.split()) <= 5 and not _SUFFIX.match(x) and not _VERB.search(x) for x in pieces):
        return pieces
    return None


def parse_list(text: str, cap: int, max_words: int = 0, commas: bool = True) -> list[str]:
    """The items of a list the model wrote, one per line: list markers, emphasis and a leading label
    ("Entities:", "Study strategies:") stripped, heading lines (ending with ':') dropped, duplicates
    (ignoring case and spacing) dropped, at most `cap`; with `max_words`, longer lines (sentences, not
    names) are dropped. With `commas`, a list written on a single line is split at its commas when
    every piece looks like a name (`_comma_pieces`); a list of several lines is one item per line."""
    lines = [_clean(ln) for ln in (text or "").splitlines()]
    lines = [ln for ln in lines if ln and not ln.endswith(":")]
    if commas and len(lines) == 1:
        lines = _comma_pieces(lines[0]) or lines
    out, seen = [], set()
    for item in lines:
        item = item.rstrip(";,").strip()
        if item.endswith(".") and not _ABBREVIATION_END.search(item):
            item = item.rstrip(".").strip()
        key = " ".join(item.casefold().split())
        if not key or key in seen or (max_words and len(key.split()) > max_words):
            continue
        seen.add(key)
        out.append(item)
    return out[:cap]


def parse_entities(text: str, title: str | None, cap: int) -> list[str]:
    """The entities of the model's list (`parse_list`, names of at most 8 words; "Name: description" or
    "Name - description" keeps the name), the title first when given, at most `cap`."""
    names = [re.split(r"\s+[-\u2013\u2014]\s+|:\s+|\s+\(", item, maxsplit=1)[0].strip()
             for item in parse_list(text, cap=10_000)]
    listed = parse_list("\n".join(([title] if title else []) + names), cap=10_000, max_words=8, commas=False)
    return listed[:cap]


def relation_sets(entities: list[str], max_calls: int, triples: int, rng: random.Random) -> list[tuple[str, ...]]:
    """Seeded random entity pairs, then triples (`triples` of them where there are three entities), at
    most `max_calls` in all; pairs first."""
    n_tri = min(triples, max_calls) if len(entities) >= 3 else 0
    tris = rng.sample(list(combinations(entities, 3)), min(n_tri, comb(len(entities), 3)))
    pairs = list(combinations(entities, 2))
    return rng.sample(pairs, min(max_calls - len(tris), len(pairs))) + tris


def entigraph(drafts: list[Draft], stages: Stages, g: GeneratorConfig) -> None:
    lists = stages.run("entities", [(d, stages.prompt("entigraph_entities", d.passage)) for d in drafts])
    requests = []
    for d, text in zip(drafts, lists):
        if text is None:
            continue
        ents = parse_entities(text, d.passage.title if g.title_entity else None, g.max_entities)
        if len(ents) < 2:
            d.why = f"entigraph: fewer than 2 entities to relate (the model's list gave {ents})"
            continue
        for combo in relation_sets(ents, g.max_calls, g.triples, d.rng):
            names = dict(zip("abc", combo))
            requests.append((d, stages.prompt("entigraph_pair" if len(combo) == 2 else "entigraph_triple",
                                              d.passage, **names)))
    for (d, _), text in zip(requests, stages.run("relations", requests)):
        if text:
            d.parts.append(text)


def active_reading(drafts: list[Draft], stages: Stages, g: GeneratorConfig) -> None:
    lists = stages.run("strategies", [(d, stages.prompt("active_reading_strategies", d.passage, n=g.strategies))
                                      for d in drafts])
    requests = []
    for d, text in zip(drafts, lists):
        found = parse_list(text or "", cap=g.strategies, commas=False)  # a strategy is a sentence: no comma split
        if text is not None and not found:
            d.why = "active_reading: the model proposed no study strategy"
        requests += [(d, stages.prompt("active_reading_apply", d.passage, strategy=s)) for s in found]
    for (d, _), text in zip(requests, stages.run("apply", requests)):
        if text:
            d.parts.append(text)


def prompt_set(drafts: list[Draft], stages: Stages, g: GeneratorConfig) -> None:
    requests = [(d, stages.prompt(name, d.passage)) for d in drafts for name in g.prompt_set]
    for (d, _), text in zip(requests, stages.run("prompts", requests)):
        if text:
            d.parts.append(text)


GENERATORS: dict[str, Callable[[list[Draft], Stages, GeneratorConfig], None]] = {
    "entigraph": entigraph, "active_reading": active_reading, "prompt_set": prompt_set}
TEMPLATES_NEEDED: dict[str, Callable[[GeneratorConfig], list[str]]] = {
    "entigraph": lambda g: ["entigraph_entities", "entigraph_pair"] + (["entigraph_triple"] if g.triples else []),
    "active_reading": lambda g: ["active_reading_strategies", "active_reading_apply"],
    "prompt_set": lambda g: list(g.prompt_set)}


def all_formats() -> list[str]:
    return [*FORMATS, *GENERATORS]


def check_any_format(fmt: str, cfg: SelfEditConfig, where: str = "self_edit.format") -> None:
    """A single-call, `none`, `from_file` or multi-call format, checked with its templates; SelfEditError."""
    if fmt in GENERATORS:
        g = cfg.generators
        if cfg.template != "config":
            raise SelfEditError(f"{where}={fmt}: self_edit.template={cfg.template} gives one prompt, and a "
                                "multi-call format needs its own templates; use self_edit.template=config")
        if fmt == "prompt_set" and not g.prompt_set:
            raise SelfEditError("self_edit.generators.prompt_set is empty: name at least one template")
        missing = [t for t in TEMPLATES_NEEDED.get(fmt, lambda _: [])(g) if t not in cfg.templates]
        if missing:
            raise SelfEditError(f"{where}={fmt}: self_edit.templates has no prompt named {', '.join(missing)}")
        if g.split not in ("paragraphs", "lines", "whole"):
            raise SelfEditError(f"self_edit.generators.split: unknown mode '{g.split}' (choose paragraphs, lines "
                                "or whole)")
    elif fmt in FORMATS:
        check_format(fmt, cfg)
    else:
        raise SelfEditError(f"{where}: unknown format '{fmt}' (choose one of {', '.join(all_formats())})")


def single_call_only(fmt: str, why: str) -> None:
    """Refuse a multi-call format where a self-edit must be one prompt -> one completion."""
    if fmt in GENERATORS:
        raise ConfigError(f"self_edit.format={fmt}: a multi-call format (several model calls per self-edit) "
                          f"cannot be used here: {why}. Use a single-call format ({', '.join(MODEL_FORMATS)})")


def no_directive(fmt: str, why: str, where: str = "self_edit.format") -> None:
    """Refuse a format whose self-edit carries a training directive (`implications-hp`, `implications-hp-first`:
    "Training: lr=..., epochs=..., passage=...", `seal.domains.knowledge.directive`) where the directive cannot be honoured:
    only one inner loop per self-edit (`KnowledgeTask.train_job`: ki_eval, restem) applies its lr and epochs."""
    if fmt in DIRECTIVE_FORMATS:
        plain = ", ".join(f for f in MODEL_FORMATS if f not in DIRECTIVE_FORMATS)
        raise ConfigError(f"{where}={fmt}: its self-edits carry a training directive (lr, epochs, passage) that "
                          f"only a per-self-edit inner loop (ki_eval, restem) honours; {why}, so the directive would "
                          f"be ignored or trained on as text. Use a format without one ({plain})")


def single_call_edits(rows: list[list[tuple[str, list[int]]]], seconds: float) -> list[list[GeneratedEdit]]:
    """(text, ids) samples of one batch as GeneratedEdits: one call each, the batch's seconds shared."""
    spent = [Spent() for row in rows for _ in row]
    charge(spent, [ids for row in rows for _, ids in row], seconds)
    it = iter(spent)
    return [[GeneratedEdit(text, c.tokens, c.calls, c.seconds) for (text, _), c in zip(row, it)] for row in rows]


def as_part(text: str) -> str:
    """A call's answer as one part of a self-edit: stripped, every run of newlines holding only whitespace
    collapsed to one newline, so that the joined self-edit splits at blank lines into exactly its parts."""
    return re.sub(r"\n(?:[^\S\n]*\n)+", "\n", text.strip())


def run_generator(fmt: str, passages: list[Passage], k: int, seed: int, cfg: SelfEditConfig, generate: Generate,
                  desc: str | None = None) -> list[list[GeneratedEdit]]:
    """k self-edits per passage of the multi-call format `fmt`, their stages batched over all of them."""
    drafts = [Draft(passage=p, sample=s, rng=random.Random(derive_seed(seed, fmt, "draft", p.uid, s)))
              for p in passages for s in range(k)]
    GENERATORS[fmt](drafts, Stages(generate, fmt, seed, cfg, desc), cfg.generators)
    edits = []
    for d in drafts:
        text = "\n\n".join(as_part(p) for p in d.parts if p.strip())
        why = d.why or (None if text else f"{fmt}: its {d.calls} call(s) gave no text")
        edits.append(GeneratedEdit(text if not d.why else "", d.tokens, d.calls, d.seconds, why))
    return [edits[i * k:(i + 1) * k] for i in range(len(passages))]
