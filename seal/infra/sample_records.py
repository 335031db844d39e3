"""Self-edits sampled and recorded in fixed chunks of contexts.

One sampling batch (say the E-step's k self-edits for each of 50 contexts) is drawn and recorded chunk
by chunk, under `<prefix>/<j>` (`estep/0/completions/3`), each chunk with its own seed. A run killed
while sampling redoes at most one chunk when resumed, and draws exactly what an uninterrupted run
draws. The first chunk keeps the seed the whole batch had before sampling was chunked, so a batch
that fits one chunk samples as it always did. A run from before chunking holds the whole batch in
one record at `<prefix>`; it is read as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seal.infra.config import derive_seed
from seal.infra.run_dir import RunDir

PROMPTS_PER_CHUNK = 64
MERGED = ("completions", "completion_ids", "sampling", "cost", "notes")  # per-context fields, joined over the chunks


def contexts_per_chunk(per_context: int, setting: int) -> int:
    """`setting` contexts per chunk, or for 0 as many as make PROMPTS_PER_CHUNK prompts (at least one)."""
    return setting or max(1, PROMPTS_PER_CHUNK // max(per_context, 1))


def chunk_seed(seed: int, names: tuple, j: int) -> int:
    return derive_seed(seed, *names, *([j] if j else []))


def sample_chunked(rd: RunDir, prefix: str, contexts: list, size: int,
                   draw: Callable[[int, list], dict]) -> dict:
    """The merged record of `contexts`' samples (`read_samples`), drawing and recording the chunks of
    `size` contexts not recorded yet; `draw(j, group)` samples chunk j and returns its record."""
    if rd.has(prefix):
        return read_samples(rd, prefix)
    for j, start in enumerate(range(0, len(contexts), size)):
        if not rd.has(rd.key(prefix, j)):
            rd.put(rd.key(prefix, j), draw(j, contexts[start:start + size]))
    merged = read_samples(rd, prefix) or {"completions": {}}
    # contexts added on a resume (a longer list than the run was started with) that no recorded chunk
    # holds: drawn in further chunks numbered after the recorded ones; what was drawn is never redrawn
    missing = [c for c in contexts if c.uid not in merged["completions"]]
    if not missing:
        return merged
    j = len(merged.get("seeds", []))  # one seed per recorded chunk
    for start in range(0, len(missing), size):
        rd.put(rd.key(prefix, j), draw(j, missing[start:start + size]))
        j += 1
    return read_samples(rd, prefix)


def read_samples(rd: RunDir, prefix: str) -> dict[str, Any] | None:
    """The samples recorded under `prefix` as one record: `completions` (and `completion_ids`, `sampling`,
    the generation `cost` and `notes` on empty self-edits where recorded) keyed by context uid, and `seeds`, one per chunk; None if there are none."""
    if rd.has(prefix):
        return rd.get(prefix)
    parts = []
    while rd.has(rd.key(prefix, len(parts))):
        parts.append(rd.get(rd.key(prefix, len(parts))))
    if not parts:
        return None
    out: dict[str, Any] = {"seeds": [p["seed"] for p in parts]}
    for p in parts:
        for name in MERGED:
            if name in p:
                out.setdefault(name, {}).update(p[name])
    return out
