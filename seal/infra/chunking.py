"""Fixed chunks of a job list: the unit a recipe computes, records and, on resume, redoes whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def chunks(items: list, size: int) -> list[list]:
    """Fixed consecutive chunks of a recipe's full job list (resume redoes a chunk as a unit, so a
    resumed run batches, and so rounds, exactly as an uninterrupted one)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def pending_chunks(items: list, size: int, done: Callable[[Any], bool]) -> list[list]:
    """The items not yet recorded (`done(item)` false), in fixed consecutive chunks. A chunk is recorded
    whole, so after a kill the pending items are whole chunks of the full list, in order, and only the
    last can be short: they chunk again exactly as the uninterrupted run chunked them. Items added on a
    resume (a longer held-out list) form new chunks after them, so nothing recorded is computed again."""
    return chunks([x for x in items if not done(x)], size)
