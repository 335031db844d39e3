"""A verdict cache for LLM judges, so a judge is never paid twice for the same question.

A verdict is keyed by a sha256 of (judge model, prompt template, question, gold, answer): a different
judge or a reworded prompt is a different verdict. Records go to an append-only JSONL file, one line
per verdict, flushed and fsynced as it is written, so a run killed half-way keeps every verdict it
obtained and a re-run asks only for the rest. A torn last line (killed mid-write) is skipped when the
file is read back. A record holds the key, the verdict and the judge's raw reply; never an API key.
One lock guards the in-memory table and the file, so concurrent grader threads can share a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "verdicts.jsonl"


def verdict_key(judge_model: str, template: str, question: str, gold: str, answer: str) -> str:
    return hashlib.sha256(json.dumps([judge_model, template, question, gold, answer]).encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reply: str


class JudgeCache:
    """Verdicts by key, kept in memory and (with a folder) appended to `<folder>/verdicts.jsonl`."""

    def __init__(self, folder: str | Path | None):
        self.path = Path(folder) / FILE_NAME if folder is not None else None
        self._lock = threading.Lock()
        self._table: dict[str, Verdict] = {}
        self.skipped_lines = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        for line in data.splitlines():
            try:
                rec = json.loads(line)
                self._table[rec["key"]] = Verdict(bool(rec["correct"]), str(rec["reply"]))
            except (ValueError, KeyError, TypeError):
                self.skipped_lines += int(bool(line.strip()))
        if data and not data.endswith(b"\n"):
            self._append(b"\n")  # end a torn line, so the next record starts on a line of its own

    def _append(self, data: bytes) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            return self._table.get(key)

    def put(self, key: str, verdict: Verdict) -> None:
        """Record a verdict; it is on disk when this returns."""
        line = json.dumps({"key": key, "correct": verdict.correct, "reply": verdict.reply}) + "\n"
        with self._lock:
            if self.path is not None:
                self._append(line.encode())
            self._table[key] = verdict

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)
