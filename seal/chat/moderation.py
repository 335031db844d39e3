"""What a chat session refuses to learn before any work starts: `LearnRefused`, the `Moderator`
protocol and the default moderator (empty, huge or binary content)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LearnRefused(ValueError):
    """Content refused before any learning (moderation); the message says why."""


class Moderator(Protocol):
    def check(self, text: str) -> str | None:
        """None to accept, else the reason for refusing."""


@dataclass(frozen=True)
class ModerationConfig:
    min_chars: int = 3
    max_chars: int = 20_000
    max_control_fraction: float = 0.01  # control characters other than whitespace


class DefaultModerator:
    """Refuses content that is empty, larger than `max_chars`, or not text (NUL bytes, control characters)."""

    def __init__(self, cfg: ModerationConfig):
        self.cfg = cfg

    def check(self, text: str) -> str | None:
        if not text or len(text.strip()) < self.cfg.min_chars:
            return f"the content is empty (fewer than {self.cfg.min_chars} characters)"
        if len(text) > self.cfg.max_chars:
            return f"the content has {len(text):,} characters, more than moderation.max_chars={self.cfg.max_chars:,}"
        if "\x00" in text or "\ufffd" in text:
            return "the content looks binary (NUL bytes or undecodable characters), not text"
        control = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t")
        if control > self.cfg.max_control_fraction * len(text):
            return f"the content looks binary ({control} control characters in {len(text)})"
        return None
