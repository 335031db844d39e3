"""The locality bank cut to what one model knows: the questions its unadapted weights answer correctly,
greedily, as graded. Locality is measured on these only, so a question the base model never knew
cannot count as forgotten.

Answering the whole bank costs one batched generation per model; the kept ids can be cached in a JSON
file keyed by the model's fingerprint (`seal.models.fingerprint`), the bank's content and the asking
settings, so a later session on the same model reads them instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

from seal.eval.edit_eval import EditEvalConfig, ask, grade
from seal.eval.graders import Grader
from seal.eval.locality_bank import BankRecord
from seal.models.fingerprint import model_fingerprint

_CACHE_VERSION = 1


def sample_bank(bank: Sequence[BankRecord], cfg: EditEvalConfig) -> list[BankRecord]:
    """At most `cfg.bank_size` records, a `cfg.seed`-fixed sample kept in bank order."""
    if cfg.bank_size is None or len(bank) <= cfg.bank_size:
        return list(bank)
    keep = set(random.Random(cfg.seed).sample(range(len(bank)), cfg.bank_size))
    return [r for i, r in enumerate(bank) if i in keep]


def cache_key(fingerprint: str, bank: Sequence[BankRecord], cfg: EditEvalConfig, chat: bool,
              system_prompt: str | None, grader: Grader) -> str:
    """What the kept set depends on: the model, the questions and golds, how they are asked and graded."""
    body = [fingerprint, [r.to_dict() for r in bank], cfg.template, cfg.base_cue, cfg.max_new_tokens, chat,
            system_prompt, type(grader).__name__]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}  # a cache: missing or corrupt means asking again
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION or not isinstance(data.get("entries"),
                                                                                              dict):
        return {}
    return data["entries"]


def _write_cache(path: Path, entries: dict) -> None:
    """Atomically: a killed write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"version": _CACHE_VERSION, "entries": entries}, f, indent=1)
    os.replace(tmp, path)


def known_questions(model, tok, bank: Sequence[BankRecord], grader: Grader, cfg: EditEvalConfig = EditEvalConfig(),
                    chat: bool | None = None, system_prompt: str | None = None,
                    cache_path: str | Path | None = None) -> list[BankRecord]:
    """The records of `bank` (sampled to `cfg.bank_size`) that the model, as it is now, answers correctly.
    Call it on the unadapted model. With `cache_path`, a cached answer for the same model, bank and
    settings is read, and a new one written."""
    chat = bool(getattr(tok, "chat_template", None)) if chat is None else chat
    asked = sample_bank(bank, cfg)
    key = entries = None
    if cache_path is not None:
        cache_path = Path(cache_path)
        key = cache_key(model_fingerprint(model, tok), asked, cfg, chat, system_prompt, grader)
        entries = _read_cache(cache_path)
        hit = entries.get(key)
        by_id = {r.id: r for r in asked}
        if isinstance(hit, dict) and isinstance(hit.get("known"), list) and all(i in by_id for i in hit["known"]):
            return [by_id[i] for i in hit["known"]]
    records = grade(ask(model, tok, asked, cfg, chat, system_prompt), grader)
    known = [r for r, rec in zip(asked, records) if rec["correct"]]
    if cache_path is not None:
        entries[key] = {"known": [r.id for r in known], "asked": len(asked)}
        _write_cache(cache_path, entries)
    return known
