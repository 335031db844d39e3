"""The knowledge domain's self-edit error, in a module of its own so that both `self_edit` and
`directive` raise it without importing each other."""

from __future__ import annotations


class SelfEditError(ValueError):
    """A self-edit cannot be turned into training data; the message says which and why."""
