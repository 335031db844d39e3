"""The conditions knowledge recipes compare (`conditions=[base,passage,self_edit,from_file]`): checking
them, reading self-edits from files, sampling the model's own in recorded chunks, and pooling a set of
passages with their self-edits into one training corpus (continued pretraining)."""

from __future__ import annotations

from seal.data.sources import DataError, load_seal_file
from seal.domains.knowledge.config import CONDITIONS, ConditionsSetup
from seal.domains.knowledge.self_edit import (
    MODEL_FORMATS,
    SelfEditConfig,
    SelfEditError,
    check_format,
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
    if "self_edit" in cfg.conditions:
        try:
            check_format(cfg.self_edit.format, cfg.self_edit)
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


def sample_in_chunks(task: KnowledgeTask, rd: RunDir, prefix: str, passages: list, se: SelfEditConfig,
                     names: tuple, seed: int) -> dict[str, list[str]]:
    """k self-edits per passage, drawn and recorded in chunks (`seal.infra.sample_records`): a kill while
    sampling loses at most one chunk. uid -> texts."""
    size = contexts_per_chunk(se.k, se.sample_chunk)

    def draw(j: int, group: list) -> dict:
        s = chunk_seed(seed, names, j)
        texts = task.sample(group, se.format, se.k, s, desc=f"sampling self-edits ({j + 1})")
        return {"chunk": j, "seed": s, "completions": {p.uid: t for p, t in zip(group, texts)}}

    return sample_chunked(rd, prefix, passages, size, draw)["completions"]


def pooled_documents(passages, comps: dict[str, list[str]], title_prefix: bool) -> tuple[list[str], int]:
    """Each passage's text, then each of its completions whole as one document (REFERENCE 1.1, CPT);
    returns the documents and how many empty completions were skipped."""
    docs, skipped = [], 0
    for p in passages:
        docs.append(passage_document(p))
        for text in comps.get(p.uid, []):
            if not text.strip():
                skipped += 1
                continue
            docs.append(f"{p.title}\n{text.strip()}" if title_prefix else text.strip())
    return docs, skipped
