"""The conditions knowledge recipes compare (`conditions=[base,passage,self_edit,from_file]`): checking
them, reading self-edits from files, sampling the model's own in recorded chunks, and pooling a set of
passages with their self-edits into one training corpus (continued pretraining)."""

from __future__ import annotations

from dataclasses import replace

from seal.data.sources import DataError, load_seal_file
from seal.domains.knowledge.config import CONDITIONS, ConditionsSetup
from seal.domains.knowledge.generators import GENERATORS, check_any_format
from seal.domains.knowledge.self_edit import (
    MODEL_FORMATS,
    SelfEditConfig,
    SelfEditError,
    completion_to_documents,
    passage_document,
)
from seal.domains.knowledge.task import KnowledgeTask
from seal.infra.config import ConfigError
from seal.infra.run_dir import RunDir
from seal.infra.sample_records import chunk_seed, contexts_per_chunk, sample_chunked


def validate_conditions(cfg: ConditionsSetup) -> None:
    unknown = [c for c in cfg.conditions if c not in CONDITIONS]
    if unknown:
        raise ConfigError(f"conditions: unknown {unknown} (choose from {', '.join(CONDITIONS)})")
    if "from_file" in cfg.conditions and not cfg.from_files:
        raise ConfigError("conditions has from_file but from_files is empty: set from_files.<label>=<path>")
    for label, fmt in cfg.from_file_formats.items():
        if label not in cfg.from_files:
            raise ConfigError(f"from_file_formats.{label}: no file with that label in from_files "
                              f"({', '.join(cfg.from_files) or 'none'})")
        if fmt not in MODEL_FORMATS:
            raise ConfigError(f"from_file_formats.{label}: unknown format '{fmt}' (choose {', '.join(MODEL_FORMATS)})")
    if cfg.formats and "self_edit" not in cfg.conditions:
        raise ConfigError(f"formats={list(cfg.formats)} names self-edit formats, but conditions="
                          f"{list(cfg.conditions)} has no self_edit, so they would never run: add self_edit to "
                          "conditions, or set formats=[]")
    if len(set(cfg.formats)) != len(cfg.formats):
        raise ConfigError(f"formats: a format is listed twice in {list(cfg.formats)}")
    for fmt in cfg.formats:
        if fmt == "from_file":
            raise ConfigError("formats: from_file is read, not generated: use the from_file condition with from_files")
        try:
            check_any_format(fmt, cfg.self_edit, where="formats")
        except SelfEditError as e:
            raise ConfigError(str(e)) from None
    if "self_edit" in cfg.conditions and not cfg.formats:
        try:
            check_any_format(cfg.self_edit.format, cfg.self_edit)
        except SelfEditError as e:
            raise ConfigError(str(e)) from None
        if cfg.self_edit.format == "from_file":
            raise ConfigError("self_edit.format=from_file: use the from_file condition with from_files instead")
    if cfg.self_edit.k < 1:
        raise ConfigError(f"self_edit.k must be at least 1, got {cfg.self_edit.k}")


def file_completions(label: str, path: str, passages: list) -> dict[str, list[str]]:
    """Map passage uid -> completions from a self-edit file, matched on the passage context."""
    by_context = {p.context.strip(): p.completions for p in load_seal_file(path)}
    out = {}
    for p in passages:
        if p.context.strip() in by_context:
            out[p.uid] = by_context[p.context.strip()]
    if not out:
        raise DataError(f"from_files.{label}={path}: none of the {len(passages)} selected passages occurs in "
                        f"this file (records are matched on their 'context' field)")
    return out


def self_edit_conditions(cfg: ConditionsSetup) -> list[tuple[str, str]]:
    """(condition, format) of each self-edit condition: `self_edit` with `self_edit.format`, or with
    `formats` set, one `self_edit:<format>` per format."""
    if "self_edit" not in cfg.conditions:
        return []
    if not cfg.formats:
        return [("self_edit", cfg.self_edit.format)]
    return [(f"self_edit:{fmt}", fmt) for fmt in cfg.formats]


def sample_recorded(task: KnowledgeTask, rd: RunDir, prefix: str, passages: list, se: SelfEditConfig, fmt: str,
                    names: tuple, seed: int, head: dict | None = None, desc: str | None = None) -> dict:
    """k self-edits per passage of format `fmt`, drawn and recorded in chunks (`seal.infra.sample_records`):
    a kill while sampling loses at most one chunk. The merged record: uid -> `completions` (texts), `cost`
    ({tokens, calls, seconds} per self-edit, `seal.domains.knowledge.generators`) and, where a self-edit
    has no text for a known reason, `notes` (the reason, or None, per self-edit)."""
    size = contexts_per_chunk(se.k, se.sample_chunk)

    def draw(j: int, group: list) -> dict:
        s = chunk_seed(seed, names, j)
        rows = task.generate_self_edits(group, fmt, se.k, s, desc=desc and f"{desc} ({j + 1})")
        rec = {**(head or {}), "chunk": j, "seed": s,
               "completions": {p.uid: [e.text for e in row] for p, row in zip(group, rows)},
               "cost": {p.uid: [e.cost() for e in row] for p, row in zip(group, rows)}}
        notes = {p.uid: [e.why for e in row] for p, row in zip(group, rows) if any(e.why for e in row)}
        return rec | ({"notes": notes} if notes else {})

    return sample_chunked(rd, prefix, passages, size, draw)


def sample_in_chunks(task: KnowledgeTask, rd: RunDir, prefix: str, passages: list, se: SelfEditConfig,
                     names: tuple, seed: int) -> dict[str, list[str]]:
    """`sample_recorded` of `self_edit.format`: uid -> texts."""
    return sample_recorded(task, rd, prefix, passages, se, se.format, names, seed,
                           desc="sampling self-edits")["completions"]


def generation_cost(samples: dict, uids: list[str], k: int) -> dict:
    """`tokens_per_passage` and `gen_seconds_per_passage` over the passages `uids`: a passage's k self-edits
    summed, then the mean over passages; None where no cost was recorded (a run from before costs were recorded)."""
    costs = [samples.get("cost", {}).get(uid) for uid in uids]
    costs = [c[:k] for c in costs if c]
    if not costs:
        return {"tokens_per_passage": None, "gen_seconds_per_passage": None}
    return {"tokens_per_passage": sum(sum(e["tokens"] for e in c) for c in costs) / len(costs),
            "gen_seconds_per_passage": sum(sum(e["seconds"] for e in c) for c in costs) / len(costs)}


def pooled_documents(passages, comps: dict[str, list[str]], title_prefix: bool, fmt: str | None = None,
                     se: SelfEditConfig | None = None) -> tuple[list[str], int]:
    """Each passage's text, then each of its completions whole as one document (REFERENCE 1.1, CPT), or,
    for a multi-call format `fmt` (`seal.domains.knowledge.generators`, with `se`), the documents `ki_eval`
    trains on (`completion_to_documents` by `self_edit.generators.split`: one per part by default)
    without the passage document, which is here once already. Returns the documents and how many
    completions were skipped (empty, or only filler)."""
    multi_call = fmt in GENERATORS
    if multi_call and se is None:
        raise ValueError("pooled_documents: a multi-call format needs the self-edit config `se`")
    docs, skipped = [], 0
    for p in passages:
        docs.append(passage_document(p))
        for text in comps.get(p.uid, []):
            if not text.strip():
                skipped += 1
                continue
            if not multi_call:
                docs.append(f"{p.title}\n{text.strip()}" if title_prefix else text.strip())
                continue
            try:
                docs += completion_to_documents(text, p, fmt, replace(se, title_prefix=title_prefix,  # type: ignore
                                                                      append_passage=False))
            except SelfEditError:
                skipped += 1
    return docs, skipped
