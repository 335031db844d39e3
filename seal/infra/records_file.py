"""The records file format (`records.jsonl`): one JSON record per line, each with its checksum
(`_sum`), verified on load; a torn last line is dropped with a warning, any other bad line refuses
the run naming file, line and key."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from seal.infra.run_folder import RunFolderError


def checksum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "_sum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def record_line(record: dict) -> str:
    return json.dumps({**record, "_sum": checksum(record)}) + "\n"


def read_records(path: Path, untagged: str | None = None) -> tuple[dict[str, dict], dict[str, str | None], int | None]:
    """The verified records of a records.jsonl, read without writing anything: (key -> record, key -> fingerprint
    of the config that made it (`untagged` for records from before the tag), byte offset of a torn last line
    or None). A record that is not valid, has no checksum or fails it is refused naming file, line and key."""
    records: dict[str, dict] = {}
    made_by: dict[str, str | None] = {}
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    offset = 0
    for i, raw in enumerate(lines):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        rec = _parse(path, i, raw, torn_ok=i == last)
        if rec is None:
            return records, made_by, start
        made_by[rec["key"]] = rec.pop("_cfg", untagged)
        records[rec["key"]] = rec
    return records, made_by, None


def _parse(path: Path, i: int, raw: bytes, torn_ok: bool) -> dict | None:
    """The record on line i (0-based) of `path`, verified; None for a torn last line."""
    try:
        rec = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        if torn_ok:
            warnings.warn(f"{path}:{i + 1}: dropping a torn last record (the run was killed mid-write)")
            return None
        raise RunFolderError(f"{path}:{i + 1}: corrupt record in the middle of the file (not valid JSON); "
                             f"the records are not trusted. Restore the file or start a new run.") from None
    if not isinstance(rec, dict) or "key" not in rec:
        raise RunFolderError(f"{path}:{i + 1}: not a record (no key)")
    if "_sum" not in rec:
        raise RunFolderError(f"{path}:{i + 1}: record '{rec['key']}' has no checksum (_sum): seal did not write it "
                             f"as it is, so the records are not trusted. Restore the file or start a new run.")
    if rec.pop("_sum") != checksum(rec):
        raise RunFolderError(f"{path}:{i + 1}: record '{rec['key']}' fails its checksum: it was modified or "
                             f"corrupted on disk, so the records are not trusted. Restore the file or start "
                             f"a new run.")
    return rec
