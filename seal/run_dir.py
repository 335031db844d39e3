"""The run folder: resolved config, append-only records, metrics, results, and resume.

Layout of a run folder:
  config.yaml      the resolved config (every seed in it)
  run.json         config fingerprint, start time, wandb run id (what resume needs)
  records.jsonl    one line per finished unit of work, keyed; written the moment it finishes
  metrics.jsonl    scalar metrics as they are produced
  results.json     final aggregate results
  report.md, *.png the human-readable report

Resuming (`resume=<run folder>`) reloads `records.jsonl`, so finished work is skipped, and refuses
to continue when the config differs from the one the run started with (unless `force_resume=true`).
A torn last line (the process was killed mid-write) is dropped with a warning, never fatal.

Every record line carries a checksum of its content (`_sum`), verified on load: a record that was
edited or corrupted on disk is reported with its file, line and key and the run is refused, never
trusted. A write that fails (disk full, quota) is rolled back to the last whole record and raised
as a `RunFolderError` that says so: the folder is never left half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

# keys that may change between a run and its resumption without changing its results
RESUME_NEUTRAL = ("resume", "force_resume", "wandb", "hydra", "progress")


class ResumeError(RuntimeError):
    pass


class RunFolderError(ResumeError):
    """The run folder cannot be written (full, unwritable) or holds corrupt records."""


def checksum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "_sum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(config: dict) -> str:
    core = {k: v for k, v in config.items() if k not in RESUME_NEUTRAL}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if prefix == "" and k in RESUME_NEUTRAL:
                continue
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


class RunDir:
    def __init__(self, path: str | Path, config: dict, resume: bool = False, force: bool = False):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise RunFolderError(f"run folder {self.path} is not writable ({e.strerror or e}); choose another with "
                                 f"hydra.run.dir=<folder>") from None
        self.config = config
        meta_path = self.path / "run.json"
        fp = fingerprint(config)
        started = (self.path / ".hydra").is_dir() or (self.path / "config.yaml").is_file()
        if resume and started and not meta_path.is_file() and not (self.path / "records.jsonl").exists():
            # killed at start-up, before the run had written anything of its own: nothing to resume, so start it
            warnings.warn(f"resume={self.path}: the run never started (no run.json, no records); starting it now")
            resume = False
        if resume:
            if not meta_path.is_file():
                raise ResumeError(f"resume={self.path}: not a run folder (no run.json)")
            self.meta = json.loads(meta_path.read_text())
            if self.meta["fingerprint"] != fp and not force:
                old = yaml.safe_load((self.path / "config.yaml").read_text())
                changes = "; ".join(_diff(old, config)[:10])
                raise ResumeError(f"resume={self.path}: the config differs from the run's ({changes}). "
                                  f"Resume with the original config, or add force_resume=true.")
            if self.meta["fingerprint"] != fp:  # forced: the folder now describes the new config, the old one is kept
                os.replace(self.path / "config.yaml", self.path / f"config.{self.meta['fingerprint'][:8]}.yaml")
                (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
                self.meta.setdefault("forced_from", []).append(self.meta["fingerprint"])
                self.meta["fingerprint"] = fp
            self.meta.setdefault("resumed_at", []).append(time.strftime("%Y-%m-%dT%H:%M:%S"))
        else:
            if (self.path / "records.jsonl").exists():
                raise ResumeError(f"{self.path} already holds a run; pass resume={self.path} to continue it")
            self.meta = {"fingerprint": fp, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.save_meta()
        self.records: dict[str, dict] = self._load_records()

    def save_meta(self) -> None:
        tmp = self.path / "run.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2))
        os.replace(tmp, self.path / "run.json")

    def _load_records(self) -> dict[str, dict]:
        path = self.path / "records.jsonl"
        records: dict[str, dict] = {}
        if not path.exists():
            return records
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    warnings.warn(f"{path}:{i + 1}: dropping a torn last record (the run was killed mid-write)")
                    continue
                raise RunFolderError(f"{path}:{i + 1}: corrupt record in the middle of the file (not valid JSON); "
                                     f"the records are not trusted. Restore the file or start a new run.") from None
            if not isinstance(rec, dict) or "key" not in rec:
                raise RunFolderError(f"{path}:{i + 1}: not a record (no key)")
            if "_sum" in rec and rec["_sum"] != checksum(rec):
                raise RunFolderError(f"{path}:{i + 1}: record '{rec['key']}' fails its checksum: it was modified or "
                                     f"corrupted on disk, so the records are not trusted. Restore the file or start "
                                     f"a new run.")
            rec.pop("_sum", None)
            records[rec["key"]] = rec
        # rewrite without the torn line so appends stay well-formed; atomically, so that a kill
        # during the rewrite cannot lose the records
        tmp = self.path / "records.jsonl.tmp"
        try:
            with open(tmp, "w") as f:
                for rec in records.values():
                    f.write(_line(rec))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise RunFolderError(f"{self.path}: cannot rewrite records.jsonl ({e.strerror or e}); the original file "
                                 f"is untouched") from None
        os.replace(tmp, path)
        return records

    @staticmethod
    def key(*parts: Any) -> str:
        return "/".join(str(p) for p in parts)

    def has(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def put(self, key: str, record: dict) -> dict:
        return self.put_many([(key, record)])[0]

    def put_many(self, items: list[tuple[str, dict]]) -> list[dict]:
        """Append records in one write (a chunk of inner loops is recorded whole or not at all)."""
        records = [{"key": key, **rec} for key, rec in items]
        data = memoryview("".join(_line(r) for r in records).encode())
        # unbuffered, so that a failed write leaves nothing in a buffer to be flushed later
        fd = os.open(self.path / "records.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError as e:  # roll back to the last whole record, so a later append stays well-formed
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass
                raise RunFolderError(f"{self.path / 'records.jsonl'}: could not write {len(records)} record(s) "
                                     f"({e.strerror or e}); the file was rolled back to its last whole record, "
                                     f"so nothing is half-written. Free space and resume with resume={self.path}") from None
        finally:
            os.close(fd)
        for r in records:
            self.records[r["key"]] = r
        return records

    def metric(self, **values: Any) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **values}) + "\n")

    def write_json(self, name: str, obj: Any) -> Path:
        tmp = self.path / f"{name}.tmp"
        try:
            tmp.write_text(json.dumps(obj, indent=2))
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise RunFolderError(f"{self.path / name}: could not write ({e.strerror or e}); the previous file, if "
                                 f"any, is untouched") from None
        os.replace(tmp, self.path / name)
        return self.path / name


def _line(record: dict) -> str:
    return json.dumps({**record, "_sum": checksum(record)}) + "\n"
