"""The run folder: resolved config, append-only records, metrics, results, and resume.

Layout of a run folder:
  .seal-run        marker: seal made this folder (seal version, creation time); only such a folder is resumed
  .seal-lock       the exclusive lock of the process running it (pid, host, start time)
  config.yaml      the resolved config (every seed in it); config.<fp>.yaml: earlier configs (force_resume)
  run.json         config fingerprint and history, input fingerprints, start time, wandb run id
  records.jsonl    one line per finished unit of work, keyed; written the moment it finishes
  records.<time>.jsonl  records set aside by resume_inputs=redo (kept, never deleted)
  metrics.jsonl    scalar metrics as they are produced
  results.json     final aggregate results
  report.md, *.png the human-readable report

A folder is a run only if seal made it: `resume=` of any other folder (a user's, a mistyped path, one with
only Hydra's `.hydra/` and `cli.log`) is refused naming what is there, and a new run is refused in a folder
holding files seal did not write. Nothing is written in a refused folder. Runs made before the marker existed
(run.json with config.yaml or records.jsonl) are adopted on resume.

One process at a time: RunDir takes an exclusive lock on the folder before writing anything and holds it
until `close()` (or the end of a `with` block, or the process). A second process is refused naming the
holder's pid. The lock dies with its process, so a killed run never blocks its resume.

Resuming (`resume=<run folder>`) reloads `records.jsonl`, so finished work is skipped, and refuses
to continue when the config differs from the one the run started with (unless `force_resume=true`), or when
an input file changed since (see `seal/infra/inputs.py`; `resume_inputs=redo` sets the old records aside as
`records.<time>.jsonl` and redoes the work, `resume_inputs=keep` keeps them; run.json's `inputs_history`
says which was done). A torn last line (the process was killed mid-write) is dropped with a warning.

Every record line carries a checksum of its content (`_sum`), verified on load: a record that was edited,
corrupted, or written without one is reported with its file, line and key and the run is refused, never
trusted. A write that fails (disk full, quota) is rolled back to the last whole record and raised as a
`RunFolderError` that says so: the folder is never left half-written.

Which config made each record: every line carries the fingerprint of the config it was made with (`_cfg`);
run.json's `config_history` lists each fingerprint, the file its config is kept in and the keys that changed
(force_resume). When the records of a run come from more than one config, results.json gets a
`config_provenance` section with the number of records per config and the keys of the older ones.

What a folder holds and whether seal may run there, the marker and the errors are in `seal.infra.run_folder`;
the records file format (checksums, reading and verifying) is in `seal.infra.records_file`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from seal.infra.inputs import fingerprints, input_changes, package_version
from seal.infra.records_file import read_records, record_line
from seal.infra.run_folder import MARKER, Folder, ResumeError, RunFolderError, marker_text, now, write_atomic
from seal.infra.run_lock import LOCK_NAME, FolderInUse, RunLock

if TYPE_CHECKING:
    from typing import Self

# keys that may change between a run and its resumption without changing its results
RESUME_NEUTRAL = ("resume", "force_resume", "resume_inputs", "wandb", "hydra", "progress")
RESUME_INPUTS = ("check", "redo", "keep")


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


# ------------------------------------------------------------------------------------------ RunDir


class RunDir:
    """The run folder of one process; use it as a context manager, or `close()` it, to release the folder.

    `inputs` is what a resume does when an input file changed: check (refuse), redo, keep; None: the config's
    `resume_inputs` (default check)."""

    _lock: RunLock | None = None  # None: no lock taken (a read-only view made without __init__, as rerender does)

    def __init__(self, path: str | Path, config: dict, resume: bool = False, force: bool = False,
                 inputs: str | None = None):
        self.path = Path(path)
        self.config = config
        self.inputs_policy = inputs if inputs is not None else config.get("resume_inputs") or "check"
        if self.inputs_policy not in RESUME_INPUTS:
            raise ResumeError(f"resume_inputs: '{self.inputs_policy}' is not one of {', '.join(RESUME_INPUTS)}")
        self.records: dict[str, dict] = {}
        self.record_configs: dict[str, str | None] = {}  # key -> fingerprint of the config that made the record
        refusal = Folder.read(self.path).refusal(resume)
        if refusal:  # before the lock, so that a refused folder gets nothing written into it
            raise ResumeError(refusal)
        inputs = fingerprints(config, RESUME_NEUTRAL)  # reads only; the lock is then held as briefly as can be
        self._lock = self._take_lock(create=not resume)
        try:
            folder = Folder.read(self.path)  # again, now that no other process can change it
            refusal = folder.refusal(resume)
            if refusal:
                raise ResumeError(refusal)
            if resume and not folder.has("run.json"):
                # killed at start-up, before the run had written anything of its own: nothing to resume, so start it
                warnings.warn(f"resume={self.path}: the run never started (no run.json, no records); starting it now")
                resume = False
            if resume:
                self._resume(folder, force, inputs)
            else:
                self._start(inputs)
        except BaseException:
            self.close()
            raise

    # -- lifetime

    def _take_lock(self, create: bool) -> RunLock:
        try:
            if create:
                self.path.mkdir(parents=True, exist_ok=True)
            return RunLock(self.path)
        except FolderInUse as e:
            raise RunFolderError(str(e)) from None
        except OSError as e:
            raise RunFolderError(f"run folder {self.path} is not writable ({e.strerror or e}); choose another with "
                                 f"hydra.run.dir=<folder>") from None

    def close(self) -> None:
        """Release the folder; this RunDir writes nothing more."""
        if self._lock is not None:
            self._lock.release()

    def discard(self) -> bool:
        """Undo a new run that recorded nothing (its config was refused by the recipe): remove the files
        this RunDir wrote, its lock file last and while still held, then release. False, and nothing
        removed, when the run has records or the folder holds anything else."""
        own = {"config.yaml", "run.json", "metrics.jsonl", "records.jsonl", MARKER, LOCK_NAME}
        if self.records or self.closed or any(e.name not in own and e.name not in (".hydra", "cli.log")
                                              for e in self.path.iterdir()):
            return False
        for name in sorted(own - {LOCK_NAME}) + [LOCK_NAME]:  # the lock file goes while it is still locked
            (self.path / name).unlink(missing_ok=True)
        self.close()
        return True

    @property
    def closed(self) -> bool:
        return self._lock is not None and self._lock.released

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise RunFolderError(f"{self.path}: this RunDir was closed, so another process may now hold the folder; "
                                 f"nothing was written")

    # -- starting and resuming

    def _start(self, inputs: dict[str, dict]) -> None:
        fp = fingerprint(self.config)
        write_atomic(self.path / MARKER, marker_text())
        self.meta = {"fingerprint": fp, "started_at": now(), "seal": package_version("seal-rl"),
                     "config_history": [{"fingerprint": fp, "config": "config.yaml", "since": now(), "changed": []}],
                     "inputs": inputs}
        write_atomic(self.path / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        self.save_meta()

    def _resume(self, folder: Folder, force: bool, inputs: dict[str, dict]) -> None:
        try:
            self.meta = json.loads((self.path / "run.json").read_text())
            old_fp = self.meta["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunFolderError(f"{self.path / 'run.json'}: unreadable ({e}); the run cannot be resumed") from None
        history = self.meta.setdefault("config_history", _legacy_history(self.meta))
        untagged = old_fp if len(history) == 1 else None  # whom records written before `_cfg` existed belong to
        fp = fingerprint(self.config)
        changes = self._config_changes(old_fp, fp, force)
        stale = self._input_changes(self.meta.get("inputs"), inputs)
        redo = bool(stale) and self.inputs_policy == "redo"
        if not redo:
            self._load_records(untagged)
        # every check passed: from here on the folder is written
        if not folder.has(MARKER):
            write_atomic(self.path / MARKER, marker_text(adopted_from_an_older_seal=True))
        if changes is not None:
            self._switch_config(old_fp, fp, changes)
        if stale:
            self._settle_inputs(stale, redo)
        self.meta["inputs"] = inputs
        self.meta.setdefault("resumed_at", []).append(now())
        self.save_meta()

    def _config_changes(self, old_fp: str, fp: str, force: bool) -> list[str] | None:
        """None when the config is the run's; the changed keys when forced; refused otherwise."""
        if old_fp == fp:
            return None
        old = yaml.safe_load((self.path / "config.yaml").read_text()) if (self.path / "config.yaml").is_file() else {}
        changes = _diff(old, self.config)
        if not force:
            raise ResumeError(f"resume={self.path}: the config differs from the run's ({'; '.join(changes[:10])}). "
                              f"Resume with the original config, or add force_resume=true.")
        return changes

    def _switch_config(self, old_fp: str, fp: str, changes: list[str]) -> None:
        """force_resume: the folder now describes the new config; the old one is kept beside it."""
        kept = f"config.{old_fp[:8]}.yaml"
        if (self.path / "config.yaml").is_file():
            os.replace(self.path / "config.yaml", self.path / kept)
        write_atomic(self.path / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        history = self.meta["config_history"]
        history[-1]["config"] = kept
        history.append({"fingerprint": fp, "config": "config.yaml", "since": now(), "changed": changes[:50],
                        "records_before": len(self.records)})
        self.meta["fingerprint"] = fp

    def _input_changes(self, recorded: dict | None, current: dict) -> list[str]:
        if recorded is None:  # a run from before input fingerprints: nothing to compare with
            return []
        stale = input_changes(recorded, current)
        if stale and self.inputs_policy == "check":
            raise ResumeError(f"resume={self.path}: {'; '.join(stale)}. The records were made from the old "
                              f"input(s): restore them, or resume with resume_inputs=redo (set the old records "
                              f"aside and redo the work) or resume_inputs=keep (keep them, at your own risk)")
        return stale

    def _settle_inputs(self, stale: list[str], redo: bool) -> None:
        event = {"at": now(), "action": "redo" if redo else "keep", "changed": stale}
        if redo and (self.path / "records.jsonl").exists():
            stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
            aside = self.path / f"records.{stamp}.jsonl"
            while aside.exists():
                aside, n = self.path / f"records.{stamp}.{n}.jsonl", n + 1
            os.replace(self.path / "records.jsonl", aside)
            event["records_moved_to"] = aside.name
        else:
            event["records_before"] = len(self.records)
        self.meta.setdefault("inputs_history", []).append(event)
        warnings.warn(f"resume={self.path}: {'; '.join(stale)}; " + (
            f"the old records are kept in {event.get('records_moved_to')} and the work is redone" if redo
            else "keeping the records made from the old input(s) (resume_inputs=keep)"))

    # -- records

    def _load_records(self, untagged: str | None) -> None:
        path = self.path / "records.jsonl"
        if not path.exists():
            return
        self.records, self.record_configs, torn_at = read_records(path, untagged)
        if torn_at is not None:  # cut the torn line off so that appends stay well-formed (nothing is rewritten)
            try:
                os.truncate(path, torn_at)
            except OSError as e:
                raise RunFolderError(f"{path}: cannot cut off its torn last line ({e.strerror or e}); the file is "
                                     f"untouched") from None

    def save_meta(self) -> None:
        self._check_open()
        write_atomic(self.path / "run.json", json.dumps(self.meta, indent=2))

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
        self._check_open()
        records = [{"key": key, **rec} for key, rec in items]
        fp = self.meta["fingerprint"]
        data = memoryview("".join(record_line({**r, "_cfg": fp}) for r in records).encode())
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
            self.record_configs[r["key"]] = fp
        return records

    def metric(self, **values: Any) -> None:
        self._check_open()
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **values}) + "\n")

    def write_json(self, name: str, obj: Any) -> Path:
        """Write a JSON file atomically; results.json of a run whose records come from several configs gets a
        `config_provenance` section saying so."""
        self._check_open()
        provenance = self.provenance() if name == "results.json" and isinstance(obj, dict) else None
        if provenance:
            obj = {**obj, "config_provenance": provenance}
        write_atomic(self.path / name, json.dumps(obj, indent=2))
        return self.path / name

    def provenance(self) -> dict | None:
        """Which config made the records, when it is not the current one for all of them; else None."""
        made_by = getattr(self, "record_configs", {})
        counts = Counter(made_by.get(k) for k in self.records)
        current = self.meta.get("fingerprint")
        if set(counts) <= {current}:
            return None
        by_fp = {h["fingerprint"]: h for h in self.meta.get("config_history", [])}
        configs = []
        for fp, n in counts.items():
            h = by_fp.get(fp, {})
            entry = {"fingerprint": fp or "unknown (written before seal tagged records)", "n_records": n,
                     "config": h.get("config"), "changed": h.get("changed")}
            if fp != current:
                entry["keys"] = sorted(k for k in self.records if made_by.get(k) == fp)
            configs.append(entry)
        return {"note": f"these results combine records made under {len(configs)} configs (force_resume); "
                        f"the current one is {current}, see run.json config_history",
                "configs": configs}


def _legacy_history(meta: dict) -> list[dict]:
    """config_history of a run.json written before it existed."""
    earlier = [{"fingerprint": f, "config": f"config.{f[:8]}.yaml", "changed": None} for f in meta.get("forced_from", [])]
    return earlier + [{"fingerprint": meta["fingerprint"], "config": "config.yaml", "since": meta.get("started_at"),
                       "changed": [] if not earlier else None}]
