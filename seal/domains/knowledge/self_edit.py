"""Self-edits: the prompt that asks the model for one, and the training documents made from it.

Formats (prompt templates live in `seal/configs/self_edit/*.yaml`, in this project's own wording):
`implications`, `implications-long`, `rewrite`, `self-qa` (model-written), `none` (the passage
alone) and `from_file` (completions read from a SEAL-format self-edit file). Formats made of several
model calls (entigraph, active_reading, prompt_set) live in `seal.domains.knowledge.generators`; their
self-edit splits into one document per part (`generators.split`; blank lines inside a part are
collapsed when it is stored, so its parts are exactly its blank-line-separated paragraphs). `implications-hp` is
`implications` ending in a training directive line ("Training: lr=1e-3, epochs=4, passage=yes"), so
the self-edit carries its own hyperparameters (`seal.domains.knowledge.directive`); `implications-hp-first`
starts with that line, written by constrained decoding (`seal.domains.knowledge.directive_decoding`).

A completion becomes training documents as in REFERENCE 1.1: one document per non-empty line
(question/answer output: one document per Q/A pair), a leading filler line ("Sure, here are...")
dropped, at most `max_segments` kept (single-call formats; a multi-call self-edit keeps every
document), each prefixed with the passage title, and the passage itself
(title + context) appended as one more document. Every step is a config switch.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from seal.data.passage import Passage
from seal.domains.knowledge.directive import (
    DIRECTIVE_FORMATS,
    DIRECTIVE_POSITION,
    DirectiveConfig,
    check_directive_config,
    enforce,
    parse_directive,
    prompt_fields,
)
from seal.domains.knowledge.directive_decoding import directive_lines
from seal.domains.knowledge.errors import SelfEditError

# implications-hp: implications plus a final training directive line (seal.domains.knowledge.directive)
MODEL_FORMATS = ("implications", "implications-long", "implications-very-long", "rewrite", "self-qa",
                 *DIRECTIVE_FORMATS)
FORMATS = MODEL_FORMATS + ("none", "from_file")


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of the multi-call formats (`seal.domains.knowledge.generators`: entigraph, active_reading,
    prompt_set), whose self-edit is several model calls joined by blank lines."""
    max_entities: int = 12  # entigraph: entities kept from the model's list (the title counts, see below)
    title_entity: bool = True  # entigraph: the passage title is the first entity
    max_calls: int = 8  # entigraph: relation calls per self-edit (pairs and triples together)
    triples: int = 0  # entigraph: how many of those calls relate three entities instead of two
    strategies: int = 4  # active_reading: study strategies asked for, each applied in one call
    # prompt_set: the templates (names in `templates`) asked once each, their answers mixed into one self-edit
    prompt_set: list[str] = field(default_factory=lambda: ["set_paraphrase", "set_summary", "set_quiz", "set_child",
                                                           "set_timeline", "set_key_facts", "set_dialogue"])
    # stop issuing calls for a self-edit once its generated tokens reach this (0: no cap); a self-edit can
    # overshoot by at most one call's max_new_tokens. With a cap, a stage's calls go in waves, one per
    # call index, each wave one seeded batch; without one, each stage is a single seeded batch. So ANY
    # cap > 0, even one that never binds, samples different text from 0 (other batches, other seeds)
    token_budget: int = 0
    # documents of a multi-call self-edit: paragraphs (one per part) | lines | whole; never capped by
    # max_segments (its size is the generator's settings)
    split: Literal["paragraphs", "lines", "whole"] = "paragraphs"


@dataclass(frozen=True)
class SelfEditConfig:
    format: str = "implications"  # implications | implications-long | implications-very-long | rewrite | self-qa | none
    templates: dict[str, str] = field(default_factory=dict)  # format -> prompt with {title} {context}
    # config: the prompt is templates[format]; from_file: it is read at run time from the `prompt` field
    # of the SEAL-format records in template_file (e.g. the reference's released self-edit files), so a
    # run can use the paper's exact wording without that text living in this repository
    template: Literal["config", "from_file"] = "config"
    template_file: str | None = None
    k: int = 1  # self-edits per passage
    max_k: int = 64  # a larger k is refused as a likely typo (raise this if you mean it)
    # passages sampled and recorded together (a resumed run redoes at most one such chunk); 0: 64 prompts' worth
    sample_chunk: int = 0
    temperature: float = 1.0  # REFERENCE 1.1 sampling
    top_p: float = 0.95
    max_new_tokens: int = 256  # the paper let EOS end it; 256 keeps a CPU run bounded
    batch_size: int = 8
    # completion -> documents
    # lines: one document per line | paragraphs: one per blank-line-separated part | whole
    split: Literal["lines", "paragraphs", "whole"] = "lines"
    drop_filler: bool = True  # drop a leading "Sure, here are..." line
    strip_markers: bool = True  # drop list markers such as "1." or "-" at the start of a line
    max_segments: int = 30
    generators: GeneratorConfig = field(default_factory=GeneratorConfig)  # multi-call formats
    title_prefix: bool = True  # prefix every document with the passage title
    append_passage: bool = True  # add the passage itself as one more document
    # implications-hp(-first): what its "Training: lr=..., epochs=..., passage=..." line may choose
    directive: DirectiveConfig = field(default_factory=DirectiveConfig)


def check_format(fmt: str, cfg: SelfEditConfig) -> None:
    if fmt not in FORMATS:
        raise SelfEditError(f"self_edit.format: unknown format '{fmt}' (choose one of {', '.join(FORMATS)})")
    if cfg.template not in ("config", "from_file"):
        raise SelfEditError(f"self_edit.template must be config or from_file, got '{cfg.template}'")
    if cfg.template == "from_file":
        if not cfg.template_file:
            raise SelfEditError("self_edit.template=from_file needs self_edit.template_file=<SEAL-format file with "
                                "a `prompt` field>")
        template_from_file(cfg.template_file)
    elif fmt in MODEL_FORMATS and fmt not in cfg.templates:
        raise SelfEditError(f"self_edit.templates has no prompt for format '{fmt}'")
    if fmt in DIRECTIVE_FORMATS:
        check_directive_config(cfg.directive)
    if DIRECTIVE_POSITION.get(fmt) == "first":
        directive_lines(cfg.directive)  # lr as choices, and not too many lines to decode


def self_edit_prompt(passage: Passage, fmt: str, cfg: SelfEditConfig) -> str:
    check_format(fmt, cfg)
    if fmt not in MODEL_FORMATS:
        raise SelfEditError(f"format '{fmt}' is not written by the model, so it has no prompt")
    template = template_from_file(cfg.template_file) if cfg.template == "from_file" else cfg.templates[fmt]
    extra = prompt_fields(cfg.directive) if fmt in DIRECTIVE_FORMATS else {}  # the directive's allowed values
    return template.format(title=passage.title, context=passage.context, **extra)


@functools.lru_cache(maxsize=8)
def template_from_file(path: str) -> str:
    """The prompt template of a SEAL-format file whose records carry {title, context, prompt}: the first
    record's prompt with its title and context replaced by placeholders, checked against every record
    (each prompt must be exactly the template filled with that record's title and context)."""
    import json

    from seal.data.sources import DataError

    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"self_edit.template_file={path}: cannot read it as a JSON list ({e})") from None
    if not isinstance(records, list) or not records:
        raise DataError(f"self_edit.template_file={path}: expected a non-empty JSON list of records")
    template = None
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("title", "context", "prompt")):
            raise DataError(f"{path}, record {i}: needs string fields title, context and prompt")
        if template is None:
            template = _placeholders(rec, f"{path}, record {i}")
        if template.format(title=rec["title"], context=rec["context"]) != rec["prompt"]:
            raise DataError(f"{path}, record {i}: its prompt is not the same template as record 0's with this "
                            "record's title and context")
    return template


def _data_error(msg: str):
    from seal.data.sources import DataError

    return DataError(msg)


def _placeholders(rec: dict, where: str) -> str:
    prompt, title, context = rec["prompt"], rec["title"], rec["context"]
    at = prompt.find(context)
    if at < 0:
        raise _data_error(f"{where}: the prompt does not contain the record's context")
    t = prompt.rfind(title, 0, at)
    if t < 0:
        raise _data_error(f"{where}: the prompt does not contain the record's title before its context")

    def esc(s: str) -> str:
        return s.replace("{", "{{").replace("}", "}}")

    return esc(prompt[:t]) + "{title}" + esc(prompt[t + len(title):at]) + "{context}" + esc(prompt[at + len(context):])


_INTERJECTION = re.compile(r"^\W*(sure|certainly|of course|okay|ok|absolutely|alright|great)\s*[!,.:]",
                           re.IGNORECASE)
_META = re.compile(r"^\W*(here(?: is|'s| are)|below (?:is|are)|the following|implications|rewrites?|"
                   r"questions? and answers?)\b", re.IGNORECASE)
_META_NOUN = re.compile(r"\b(implications?|statements?|rewrites?|questions?|facts?|list|versions?|points?)\b",
                        re.IGNORECASE)
_MARKER = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.)]|#+|\*\*\d+\.\*\*)(?:\s+|$)")
_QA = re.compile(r"^\s*(?:(?:[-*\u2022]+|\(?\d{1,3}[.)])\s*)?(?:\*\*)?(q(?:uestion)?\s*\d*\s*[:.)])", re.IGNORECASE)


def _is_filler(line: str) -> bool:
    """A leading line that introduces the list instead of stating a fact: "Sure, here are...",
    "Here are some implications of the passage", "Implications:". A real first fact that merely
    starts with such words ("The following year, the city grew.") is kept."""
    raw = line.strip()
    s = raw.strip("*#").strip()
    if _INTERJECTION.match(s):
        return True
    if not _META.match(s):
        return False
    heading = raw.startswith("#") or (raw.startswith("**") and raw.endswith("**"))  # "## Implications"
    return heading or s.endswith(":") or (s.lower().startswith(("here", "below")) and bool(_META_NOUN.search(s)))


def _without_filler_line(paragraph: str) -> str:
    """A paragraph without its first line when that line only introduces the rest ("Sure, here is...")."""
    first, _, rest = paragraph.partition("\n")
    return rest.strip() if _is_filler(first) else paragraph


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
    if fmt in DIRECTIVE_FORMATS:  # the facts part; the directive chooses the passage document (and lr, epochs:
        completion, d = parse_directive(completion, cfg.directive, DIRECTIVE_POSITION[fmt])  # `KnowledgeTask.train_job`)
        enforce(d, cfg.directive)  # on_invalid=refuse: an invalid directive makes the self-edit unusable
        cfg = replace(cfg, append_passage=cfg.append_passage if d.append_passage is None else d.append_passage)
    segments: list[str] = []
    # a format this module does not know is a multi-call one (`seal.domains.knowledge.generators`): its
    # own split, and no cap (its size is set by the generator's settings: every part is kept)
    split = cfg.split if fmt in FORMATS else cfg.generators.split
    cap = cfg.max_segments if fmt in FORMATS else None
    if fmt not in ("none",):
        if not completion or not completion.strip():
            raise SelfEditError("empty completion: the self-edit has no text")
        if split == "whole":
            segments = [completion.strip()]
        elif split == "paragraphs":  # one document per blank-line-separated part, a leading filler line dropped
            paragraphs = [para.strip() for para in re.split(r"\n\s*\n", completion)]
            if cfg.drop_filler:
                paragraphs = [_without_filler_line(para) for para in paragraphs]
            segments = [para for para in paragraphs if para][:cap]
        elif split == "lines":
            lines = split_qa(completion) if fmt == "self-qa" else [ln.strip() for ln in completion.splitlines()]
            lines = [ln for ln in lines if ln]
            if cfg.drop_filler and lines and _is_filler(lines[0]):
                lines = lines[1:]
            if cfg.strip_markers:
                lines = [_MARKER.sub("", ln).strip() for ln in lines]
            segments = [ln for ln in lines if ln][:cap]
        else:
            where = "self_edit.split" if fmt in FORMATS else "self_edit.generators.split"
            raise SelfEditError(f"{where}: unknown mode '{split}' (choose lines, paragraphs or whole)")
        if not segments:
            raise SelfEditError("the completion holds only filler, nothing to train on")
    docs = [f"{passage.title}\n{s}" if cfg.title_prefix else s for s in segments]
    if cfg.append_passage or fmt == "none":
        docs.append(passage_document(passage))
    return docs
