"""Self-edits made of several model calls, and what every self-edit cost to generate.

A single-call format (`implications`, `rewrite`, ...) is one prompt -> one completion. The formats here
ask the model several times per self-edit and join the answers, one part per call, by blank lines
(their documents: one per paragraph, `self_edit.generators.split`):

  entigraph       call 1 lists the passage's entities; then, for seeded random pairs (and, with
                  `generators.triples`, triples) of them, one call each on how they relate according
                  to the passage, at most `generators.max_calls` such calls
  active_reading  call 1 proposes `generators.strategies` study strategies for the passage; then one
                  call per strategy applies it to the passage
  prompt_set      one call per augmentation prompt in `generators.prompt_set` (rewrite, summary, quiz,
                  explain to a child, timeline, key facts: templates named `set_*`)

Every call of one stage (say all the relation calls) of all the self-edits being drawn together is one
seeded generate call, its seed derived from the chunk's seed and the stage's name, so a resumed or
recomputed chunk gives identical text. With `generators.token_budget` a self-edit stops issuing calls
once its generated tokens reach the budget; the stage's calls then go in waves (the i-th call of every
self-edit together), so the budget is checked before each wave.

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


def parse_list(text: str, cap: int, max_words: int = 0, commas: bool = True) -> list[str]:
    """The items of a list the model wrote, one per line: list markers and emphasis stripped, heading
    lines (ending with ':') dropped, duplicates (ignoring case and spacing) dropped, at most `cap`; with
    `max_words`, longer lines (sentences, not names) are dropped. A single comma-separated line is split
    (unless `commas` is False)."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if commas and len(lines) == 1 and "," in lines[0] and not lines[0].rstrip().endswith(":"):
        lines = lines[0].split(",")
    out, seen = [], set()
    for line in lines:
        item = _ITEM.sub("", line.strip()).strip().strip("*_`\"'").strip()
        if not item or item.endswith(":"):
            continue
        item = item.rstrip(".;,").strip()
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
        found = parse_list(text or "", cap=g.strategies)
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


def single_call_edits(rows: list[list[tuple[str, list[int]]]], seconds: float) -> list[list[GeneratedEdit]]:
    """(text, ids) samples of one batch as GeneratedEdits: one call each, the batch's seconds shared."""
    spent = [Spent() for row in rows for _ in row]
    charge(spent, [ids for row in rows for _, ids in row], seconds)
    it = iter(spent)
    return [[GeneratedEdit(text, c.tokens, c.calls, c.seconds) for (text, _), c in zip(row, it)] for row in rows]


def run_generator(fmt: str, passages: list[Passage], k: int, seed: int, cfg: SelfEditConfig, generate: Generate,
                  desc: str | None = None) -> list[list[GeneratedEdit]]:
    """k self-edits per passage of the multi-call format `fmt`, their stages batched over all of them."""
    drafts = [Draft(passage=p, sample=s, rng=random.Random(derive_seed(seed, fmt, "draft", p.uid, s)))
              for p in passages for s in range(k)]
    GENERATORS[fmt](drafts, Stages(generate, fmt, seed, cfg, desc), cfg.generators)
    edits = []
    for d in drafts:
        text = "\n\n".join(p.strip() for p in d.parts if p.strip())
        why = d.why or (None if text else f"{fmt}: its {d.calls} call(s) gave no text")
        edits.append(GeneratedEdit(text if not d.why else "", d.tokens, d.calls, d.seconds, why))
    return [edits[i * k:(i + 1) * k] for i in range(len(passages))]
