"""Self-edits: the prompt that asks the model for one, and the training documents made from it.

Formats (prompt templates live in `configs/self_edit/*.yaml`, in this project's own wording):
`implications`, `implications-long`, `rewrite`, `self-qa` (model-written), `none` (the passage
alone) and `from_file` (completions read from a SEAL-format self-edit file).

A completion becomes training documents as in REFERENCE 1.1: one document per non-empty line
(question/answer output: one document per Q/A pair), a leading filler line ("Sure, here are...")
dropped, at most `max_segments` kept, each prefixed with the passage title, and the passage itself
(title + context) appended as one more document. Every step is a config switch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from seal.data import Passage

MODEL_FORMATS = ("implications", "implications-long", "implications-very-long", "rewrite", "self-qa")
FORMATS = MODEL_FORMATS + ("none", "from_file")


class SelfEditError(ValueError):
    """A self-edit cannot be turned into training data; the message says which and why."""


@dataclass
class SelfEditConfig:
    format: str = "implications"
    templates: dict[str, str] = field(default_factory=dict)  # format -> prompt with {title} {context}
    k: int = 1  # self-edits per passage
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 256
    batch_size: int = 8
    # completion -> documents
    split: str = "lines"  # lines | whole
    drop_filler: bool = True
    strip_markers: bool = True  # drop list markers such as "1." or "-" at the start of a line
    max_segments: int = 30
    title_prefix: bool = True
    append_passage: bool = True


def check_format(fmt: str, cfg: SelfEditConfig) -> None:
    if fmt not in FORMATS:
        raise SelfEditError(f"self_edit.format: unknown format '{fmt}' (choose one of {', '.join(FORMATS)})")
    if fmt in MODEL_FORMATS and fmt not in cfg.templates:
        raise SelfEditError(f"self_edit.templates has no prompt for format '{fmt}'")


def self_edit_prompt(passage: Passage, fmt: str, cfg: SelfEditConfig) -> str:
    check_format(fmt, cfg)
    if fmt not in MODEL_FORMATS:
        raise SelfEditError(f"format '{fmt}' is not written by the model, so it has no prompt")
    return cfg.templates[fmt].format(title=passage.title, context=passage.context)


_FILLER = re.compile(
    r"^\W*(sure|certainly|of course|okay|ok|absolutely|here (is|are)|below (is|are)|the following|"
    r"implications|rewrites?|questions? and answers?)\b", re.IGNORECASE)
_MARKER = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.)]|#+|\*\*\d+\.\*\*)(?:\s+|$)")
_QA = re.compile(r"^\s*(?:(?:[-*\u2022]+|\(?\d{1,3}[.)])\s*)?(?:\*\*)?(q(?:uestion)?\s*\d*\s*[:.)])", re.IGNORECASE)


def _is_filler(line: str) -> bool:
    s = line.strip().strip("*#").strip()
    return bool(_FILLER.match(s)) and (s.endswith(":") or len(s.split()) <= 12)


def split_qa(text: str) -> list[str]:
    """One segment per question/answer pair (a 'Q:' line starts a new pair)."""
    segments: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if _QA.match(line) or not segments:
            segments.append([line.strip()])
        else:
            segments[-1].append(line.strip())
    return [" ".join(s) for s in segments]


def passage_document(passage: Passage) -> str:
    """The passage as one training document: its title, a newline, its text."""
    return f"{passage.title}\n{passage.context}"


def completion_to_documents(completion: str, passage: Passage, fmt: str, cfg: SelfEditConfig) -> list[str]:
    """Training documents for one self-edit (the passage document included when configured)."""
    segments: list[str] = []
    if fmt not in ("none",):
        if not completion or not completion.strip():
            raise SelfEditError("empty completion: the self-edit has no text")
        if cfg.split == "whole":
            segments = [completion.strip()]
        elif cfg.split == "lines":
            lines = split_qa(completion) if fmt == "self-qa" else [ln.strip() for ln in completion.splitlines()]
            lines = [ln for ln in lines if ln]
            if cfg.drop_filler and lines and _is_filler(lines[0]):
                lines = lines[1:]
            if cfg.strip_markers:
                lines = [_MARKER.sub("", ln).strip() for ln in lines]
            segments = [ln for ln in lines if ln][: cfg.max_segments]
        else:
            raise SelfEditError(f"self_edit.split: unknown mode '{cfg.split}' (choose lines or whole)")
        if not segments:
            raise SelfEditError("the completion holds only filler, nothing to train on")
    docs = [f"{passage.title}\n{s}" if cfg.title_prefix else s for s in segments]
    if cfg.append_passage or fmt == "none":
        docs.append(passage_document(passage))
    return docs
