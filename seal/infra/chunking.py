"""Fixed chunks of a job list: the unit a recipe computes, records and, on resume, redoes whole."""

from __future__ import annotations


def chunks(items: list, size: int) -> list[list]:
    """Fixed consecutive chunks of a recipe's full job list (resume redoes a chunk as a unit, so a
    resumed run batches, and so rounds, exactly as an uninterrupted one)."""
    return [items[i:i + size] for i in range(0, len(items), size)]
