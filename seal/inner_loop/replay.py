"""Compute-equivalent replay at the token level (REFERENCE 2), and an offline general-text source.

With replay fraction f, every optimizer step trains on exactly `batch_tokens` tokens, of which
round(f * batch_tokens) come from a replay source and the rest from the new data: total compute is
unchanged and the new data seen shrinks by the same amount. Both streams are packed: documents
are joined with EOS and cut into rows of at most `seq_len` tokens, so the token counts are exact.

Replay sources: a general-text corpus (by default the documentation text of Python's standard
library, which installs with every Python: offline, fixed for a Python version, no download), a
local text/JSONL file, previously accepted self-edits, or several mixed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
from dataclasses import dataclass
from pathlib import Path

from seal.data.sources import DataError

# modules whose documentation reads as ordinary technical English
STDLIB_MODULES = ("argparse", "asyncio", "bisect", "calendar", "collections", "configparser", "contextlib", "csv",
                  "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools",
                  "heapq", "http.client", "inspect", "ipaddress", "itertools", "json", "logging", "pathlib", "pickle",
                  "random", "sched", "shutil", "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap",
                  "threading", "typing", "unittest", "urllib.request", "uuid", "zipfile", "doctest", "pdb", "timeit",
                  "tokenize", "ast", "pprint", "weakref", "copy", "queue", "concurrent.futures", "selectors",
                  "tempfile", "glob", "fnmatch", "filecmp", "hashlib", "hmac", "secrets", "base64", "mimetypes",
                  "gzip", "shelve", "warnings", "traceback", "abc", "graphlib", "optparse", "smtplib", "ftplib",
                  "imaplib", "mailbox", "xml.dom.minidom", "html.parser", "socketserver", "trace", "cmd", "code",
                  "getopt", "gettext", "locale", "numbers", "operator", "os", "re", "socket", "ssl", "types")


@dataclass(frozen=True)
class ReplayConfig:
    fraction: float = 0.0  # share of every step's tokens taken from the replay source (0: no replay)
    sources: list[str] | None = None  # "general", "self_edits", or a path to a .txt / .jsonl ({"text": ...}) file
    seed: int = 0


def general_corpus(min_chars: int = 200) -> list[str]:
    """Paragraph-sized texts from the standard library's documentation, in a fixed order."""
    texts = []
    for name in STDLIB_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # a Python built without it (e.g. no ssl): the corpus is a little smaller
            continue
        objs = [mod] + [getattr(mod, a) for a in sorted(getattr(mod, "__all__", None) or dir(mod))
                        if not a.startswith("_")]
        for obj in objs:
            if inspect.getmodule(obj) is not mod and obj is not mod:
                continue
            doc = inspect.getdoc(obj) or ""
            texts += [p.strip() for p in doc.split("\n\n") if len(p.strip()) >= min_chars and _prose(p)]
    return list(dict.fromkeys(texts))


def _prose(paragraph: str) -> bool:
    """Not a code example: no indented or interpreter-prompt lines."""
    return not any(line.startswith(("    ", ">>>", "...")) for line in paragraph.strip().splitlines())


def load_corpus(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file (replay source)")
    if p.suffix == ".jsonl":
        out = []
        for i, line in enumerate(p.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i + 1}: not valid JSON: {e}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise DataError(f"{path}:{i + 1}: expected an object with a string field 'text'")
            out.append(rec["text"])
        return out
    return [t.strip() for t in p.read_text().split("\n\n") if t.strip()]


class TokenStream:
    """An endless, seeded stream of tokens: documents shuffled, joined with EOS, reshuffled each pass."""

    def __init__(self, docs: list[list[int]], eos: int, seed: int):
        if not docs:
            raise ValueError("a token stream needs at least one document")
        self.docs, self.eos, self.rng = docs, eos, random.Random(seed)
        self.buf: list[int] = []

    def take(self, n: int) -> list[int]:
        while len(self.buf) < n:
            order = list(range(len(self.docs)))
            self.rng.shuffle(order)
            for i in order:
                self.buf += self.docs[i] + [self.eos]
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def pack_steps(new: TokenStream, replay: TokenStream | None, fraction: float, batch_tokens: int, steps: int,
               seq_len: int) -> list[list[tuple[list[int], bool]]]:
    """Rows per step: (token ids, from replay). Every step holds exactly `batch_tokens` tokens, exactly
    round(fraction * batch_tokens) of them replayed; rows are at most `seq_len` long."""
    if not 0 <= fraction < 1:
        raise ValueError(f"replay fraction must be in [0, 1), got {fraction}")
    n_replay = round(fraction * batch_tokens) if replay is not None else 0
    out = []
    for _ in range(steps):
        rows = []
        for stream, n, is_replay in ((new, batch_tokens - n_replay, False), (replay, n_replay, True)):
            toks = stream.take(n) if n else []
            rows += [(toks[i:i + seq_len], is_replay) for i in range(0, len(toks), seq_len)]
        out.append(rows)
    return out


def replay_rows(tok, seqs: list[tuple[list[int], int]], plan: list[list[int]], replay: list[list[int]],
                fraction: float, seed: int, add_eos: bool, seq_len: int) -> tuple[list, list[list[int]]]:
    """Compute-equivalent replay for the inner loop: the same steps and step tokens as the plain `plan` over
    `seqs` (token ids, first target), packed, with round(fraction x step tokens) of every step from the
    `replay` token ids. Returns the packed rows (ids, 1) and the plan over them."""
    eos = tok.eos_token_id
    strip = [ids[:-1] if add_eos and ids[-1] == eos else ids for ids, _ in seqs]
    batch_tokens = max(1, round(sum(len(seqs[i][0]) for step in plan for i in step) / len(plan)))
    steps = pack_steps(TokenStream(strip, eos, seed), TokenStream(replay, eos, seed + 1), fraction, batch_tokens,
                       len(plan), seq_len)
    rows = [(ids, 1) for step in steps for ids, _ in step]
    new_plan, i = [], 0
    for step in steps:
        new_plan.append(list(range(i, i + len(step))))
        i += len(step)
    return rows, new_plan
