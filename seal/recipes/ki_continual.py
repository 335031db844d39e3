"""Recipe `ki_continual`: sequential self-edits and forgetting (REFERENCE 1.1 continual, 2).

    seal experiment=ki_continual      # 3 sequences x 6 fictional passages x {plain, replay, infinite}

For each variant and each sequence of passages, starting from the base model: for passage i, the
current model writes one self-edit, one inner loop trains on it (with the variant's schedule and
replay), the adapter is merged into the weights, and the model answers the questions of passages
0..i closed-book, which fills row i of the lower-triangular retention matrix (`seal.eval.retention`).
A general-capability probe, the perplexity of held-out general text, is measured before the first
edit and after every edit, and so are locality (the share of general-knowledge questions the base
model answered right that the edited model still answers right) and bleed (answers to questions about
other subjects that name the new passage's names), on greedy answers (`seal.eval.locality_check`). Replay draws from the general-text source (paragraphs disjoint from the
probe's) and/or the self-edits accepted earlier in the sequence, at a fixed token share of every
step with the step's tokens unchanged (compute-equivalent).

A sequence is recorded whole when it finishes (its later edits build on the merged weights of the
earlier ones), so a resumed run redoes at most the sequence that was cut.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from seal.data.sources import load_passages
from seal.domains.knowledge.config import KnowledgeSetup
from seal.domains.knowledge.generators import no_directive
from seal.domains.knowledge.self_edit import MODEL_FORMATS, SelfEditError, passage_document
from seal.domains.knowledge.task import KnowledgeTask, accuracy
from seal.eval.locality_check import LocalityCheck, LocalityCheckConfig, mean_of, recorded_check
from seal.eval.probes import perplexity
from seal.eval.retention import RetentionMatrix, held_share
from seal.infra.config import ConfigError, derive_seed
from seal.infra.report import md_table, print_table
from seal.infra.run_dir import RunDir
from seal.infra.tracking import Tracker
from seal.inner_loop.replay import general_corpus, load_corpus
from seal.inner_loop.schedules import Scheduler
from seal.inner_loop.trainer import InnerLoopError, TrainJob
from seal.models.loading import load_model

SEQUENCE_SOURCES = ("general", "self_edits", "past_documents")


@dataclass(frozen=True)
class VariantConfig:
    scheduler: Scheduler | None = None  # None: inner_loop.scheduler
    anneal: bool | None = None  # infinite schedule: anneal at the end of each edit (None: inner_loop.anneal)
    replay_fraction: float = 0.0
    # general | self_edits (earlier self-edits' lines) | past_documents (everything earlier updates trained
    # on: self-edit lines and their passages) | a .txt/.jsonl file path
    replay_sources: list[str] = field(default_factory=lambda: ["general"])


@dataclass(frozen=True)
class ContinualConfig:
    sequences: int = 3
    length: int = 6
    probe_docs: int = 24  # held-out general-text paragraphs for the perplexity probe
    # the variant the others are compared with (held_share: the share of its lost accuracy a variant keeps);
    # "" for none
    reference: str = "plain"
    variants: dict[str, VariantConfig] = field(default_factory=lambda: {"plain": VariantConfig()})
    # general questions the base model knew, asked after every edit; bleed questions from the edited passage
    locality: LocalityCheckConfig = field(default_factory=LocalityCheckConfig)


@dataclass(frozen=True)
class KIContinualConfig(KnowledgeSetup):  # the shared knowledge sections + its own
    continual: ContinualConfig = field(default_factory=ContinualConfig)


def validate(cfg: KIContinualConfig) -> None:
    c = cfg.continual
    if c.sequences < 1 or c.length < 1:
        raise ConfigError(f"continual.sequences and continual.length must be at least 1, got {c.sequences}, {c.length}")
    if cfg.self_edit.format not in MODEL_FORMATS:
        raise ConfigError(f"self_edit.format must be model-written ({', '.join(MODEL_FORMATS)}), got "
                          f"'{cfg.self_edit.format}'")
    no_directive(cfg.self_edit.format, "ki_continual trains every edit with the inner loop's lr and epochs and the "
                 "variant's schedule")
    if c.reference and c.reference not in c.variants:
        raise ConfigError(f"continual.reference '{c.reference}' is not one of continual.variants "
                          f"({', '.join(c.variants)}); set it to '' to skip the comparison")
    for name, v in c.variants.items():
        if not 0 <= v.replay_fraction < 1:
            raise ConfigError(f"continual.variants.{name}.replay_fraction must be in [0, 1), got {v.replay_fraction}")
        for src in v.replay_sources if v.replay_fraction > 0 else []:
            if src not in SEQUENCE_SOURCES and not Path(src).is_file():
                raise ConfigError(f"continual.variants.{name}.replay_sources: '{src}' is neither one of "
                                  f"{', '.join(SEQUENCE_SOURCES)} nor an existing .txt/.jsonl file")


def run(cfg: KIContinualConfig, rd: RunDir) -> dict:
    validate(cfg)
    with Tracker(cfg.wandb, rd, rd.config, name=f"ki_continual-{rd.path.name}") as tracker:
        return _run(cfg, rd, tracker)


def _run(cfg: KIContinualConfig, rd: RunDir, tracker: Tracker) -> dict:
    c = cfg.continual
    passages = load_passages(cfg.data)
    need = c.sequences * c.length
    if len(passages) < need:
        raise ConfigError(f"ki_continual: {c.sequences} sequences x {c.length} passages need {need} passages, data "
                          f"gives {len(passages)} (raise data.num_passages)")
    general = general_corpus()
    probe, replay_general = general[-c.probe_docs:], general[:-c.probe_docs]
    cfg = replace(cfg, inner_loop=replace(cfg.inner_loop, adapters_per_batch=1))
    model, tok = load_model(cfg.model)
    task = KnowledgeTask(model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                         backend=cfg.backend, seed=derive_seed(cfg.seed, "engine"))
    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    device = task.inner.device
    if not rd.has("probe/base"):
        rd.put("probe/base", {"perplexity": perplexity(model, tok, probe, device)})
    base_ppl = rd.get("probe/base")["perplexity"]
    # found on the base model and recorded: every sequence and a resumed run ask the same questions
    check = recorded_check(rd, c.locality, model, tok, task.chat, task.system_prompt)
    fmt = cfg.self_edit.format
    summary, all_matrices = {}, {}
    for name, v in c.variants.items():
        inner_cfg = replace(cfg.inner_loop, scheduler=v.scheduler or cfg.inner_loop.scheduler,
                            anneal=cfg.inner_loop.anneal if v.anneal is None else v.anneal)
        matrices, ppls, tokens, steps = [], [], 0, []
        for s in range(c.sequences):
            key = rd.key("sequence", name, s)
            if not rd.has(key):
                model.load_state_dict(base_state)  # every sequence starts from the base model
                task.inner.cfg = inner_cfg
                seq = passages[s * c.length:(s + 1) * c.length]
                rd.put(key, {"variant": name, "sequence": s, "passages": [p.uid for p in seq],
                             **_sequence(task, seq, v, fmt, probe, replay_general, derive_seed(cfg.seed, name, s),
                                         desc=f"{name} sequence {s}", check=check)})
            rec = rd.get(key)
            m = RetentionMatrix(c.length)
            for i, row in enumerate(rec["rows"]):
                for j, acc in enumerate(row):
                    m.record(i, j, acc)
            matrices.append(m)
            ppls.append(rec["perplexity"][-1])
            tokens += sum(st["train"]["tokens"] for st in rec["steps"] if "train" in st)
            steps.append(rec["steps"])
        all_matrices[name] = matrices
        mean = RetentionMatrix.mean(matrices)
        mean.heatmap(rd.path / f"retention_{name}.png", f"{name}: accuracy after each edit")
        summary[name] = {**mean.summary(), "rows": mean.rows(), "perplexity_after": statistics.fmean(ppls),
                         "perplexity_drift": statistics.fmean(ppls) - base_ppl, "train_tokens": tokens,
                         "per_sequence": [m.summary() for m in matrices], **_locality(steps, c.length)}
        tracker.log({f"{name}/first_retention": summary[name]["first_retention"],
                     f"{name}/off_diagonal": summary[name]["off_diagonal"]})
    if c.reference and c.length >= 2:
        for name in c.variants:
            if name != c.reference:
                summary[name]["held_vs_reference"] = held_share(all_matrices[c.reference], all_matrices[name],
                                                                seed=derive_seed(cfg.seed, "bootstrap", name))
    model.load_state_dict(base_state)
    out = {"base_perplexity": base_ppl, "variants": summary}
    rd.write_json("results.json", out)
    _report(cfg, rd, out)
    return out


def _locality(steps: list[list[dict]], length: int) -> dict:
    """Locality and bleed after edit i, mean over sequences, and after the last edit (None: not measured)."""
    at = [[seq[i]["locality"] for seq in steps if i < len(seq) and "locality" in seq[i]] for i in range(length)]
    by_edit = [mean_of(x, "locality") for x in at]
    bleed = [mean_of(x, "bleed") for x in at]
    return {"locality_by_edit": by_edit, "bleed_by_edit": bleed, "locality_after_last": by_edit[-1] if by_edit else None,
            "bleed_mean": mean_of([{"b": b} for b in bleed], "b")}


def _sequence(task: KnowledgeTask, seq, v: VariantConfig, fmt: str, probe, replay_general, seed: int,
              desc: str, check: LocalityCheck | None = None) -> dict:
    """Edit, merge and evaluate along one sequence; returns its rows, perplexities and step records."""
    rows, ppls, steps = [], [], []
    past = {"self_edits": [], "past_documents": []}
    files = {src: load_corpus(src) for src in v.replay_sources if src not in SEQUENCE_SOURCES} \
        if v.replay_fraction > 0 else {}  # read once per sequence, not once per edit
    for i, p in enumerate(tqdm(seq, desc=desc, leave=False)):
        text = task.sample([p], fmt, 1, derive_seed(seed, "sample", i))[0][0]
        step: dict = {"passage": p.uid, "self_edit": text}
        try:
            docs = task.documents(p, text, fmt)
        except SelfEditError as e:  # an unusable self-edit: the passage is still trained on alone
            step["skipped"] = str(e)
            docs = task.documents(p, "", "none")
        replay = []
        for src in v.replay_sources if v.replay_fraction > 0 else []:
            replay += replay_general if src == "general" else past[src] if src in past else files[src]
        job = TrainJob(docs, derive_seed(seed, "train", i), replay=replay or None,
                       replay_fraction=v.replay_fraction if replay else 0.0)
        stats = task.inner.train_many([job])[0]
        if isinstance(stats, InnerLoopError):
            step["failed"] = str(stats)
        else:
            task.inner.lora.merge(0)
            step["train"] = stats.to_dict()
            remember(past, docs, p)
        answers = task.answer(seq[: i + 1], [-1] * (i + 1))
        rows.append([accuracy(qs) for qs in answers])
        ppls.append(perplexity(task.inner.model, task.tok, probe, task.inner.device))
        if check is not None:  # the merged model, no adapter routed
            step["locality"] = check.measure(task.inner.model, task.tok, p)
        steps.append(step)
    return {"rows": rows, "perplexity": ppls, "steps": steps}


def remember(past: dict[str, list[str]], docs: list[str], p) -> None:
    """Add an accepted update's documents to the sequence's replay sources: `self_edits` gets the
    self-edit lines (the passage alone when the self-edit was unusable), `past_documents` all of them."""
    past["self_edits"] += [d for d in docs if d != passage_document(p)] or docs
    past["past_documents"] += docs


def _report(cfg: KIContinualConfig, rd: RunDir, out: dict) -> None:
    c = cfg.continual
    headers = ["variant", "first passage after last edit", "off-diagonal mean", "diagonal mean", "forgetting",
               "retained after last edit", f"held of what {c.reference or 'the reference'} loses [95% CI]",
               "perplexity drift", "locality after last edit", "bleed (mean per edit)", "train tokens"]
    rows = [[n, v["first_retention"], v["off_diagonal"], v["diagonal"], v["forgetting"], v["retained"],
             _held(v.get("held_vs_reference")), v["perplexity_drift"], _share(v.get("locality_after_last")),
             _share(v.get("bleed_mean")), v["train_tokens"]]
            for n, v in out["variants"].items()]
    print_table("ki_continual: retention after sequential self-edits", headers, rows)
    lines = [f"# ki_continual: {c.sequences} sequences x {c.length} passages", "",
             (f"Model `{cfg.model.name}`, data `{cfg.data.source}`, format `{cfg.self_edit.format}`; inner loop "
              f"lr {cfg.inner_loop.lr}, {cfg.inner_loop.epochs} epochs; base perplexity on the general-text probe "
              f"{out['base_perplexity']:.2f}; seed {cfg.seed}."), "", md_table(headers, rows), "",
             ("\"Retained\" is the mean accuracy on passages 1..n-1 after the last edit. \"Held\" is the variant's "
              f"retained minus {c.reference}'s, over what {c.reference} loses (its accuracy right after each edit "
              f"minus its retained), paired by sequence; the interval resamples sequences."
              if c.reference else ""), ""]
    if any(v.get("locality_by_edit") and any(x is not None for x in v["locality_by_edit"])
           for v in out["variants"].values()):
        loc = c.locality
        lines += [f"Locality after each edit: the share of {loc.questions} general-knowledge questions the base model "
                  f"answered right (greedy, {loc.max_new_tokens} tokens) that the edited model still answers right; "
                  f"bleed: the share of up to {loc.bleed_questions} questions about other subjects whose answer names "
                  "the edited passage's new names (mean over sequences).", "",
                  md_table(["variant", *[f"edit {i + 1}" for i in range(c.length)]],
                           [[f"{n} locality", *map(_share, v["locality_by_edit"])] for n, v in out["variants"].items()]
                           + [[f"{n} bleed", *map(_share, v["bleed_by_edit"])] for n, v in out["variants"].items()]),
                  ""]
    for n, v in c.variants.items():
        lines += [f"**{n}**: scheduler `{v.scheduler or cfg.inner_loop.scheduler}`, replay {v.replay_fraction} from "
                  f"{', '.join(v.replay_sources) if v.replay_fraction else '—'}", "", f"![{n}](retention_{n}.png)", ""]
    (rd.path / "report.md").write_text("\n".join(lines))


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _held(h: dict | None) -> str:
    if not h or h["held"] is None:
        return "—"
    lo, hi = h["ci95"]
    return f"{h['held']:.0%} [{lo:.0%}, {hi:.0%}]" if lo is not None else f"{h['held']:.0%}"
