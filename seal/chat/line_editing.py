"""Line editing and input history for `seal-chat` at a terminal, through the standard `readline` module:
arrow keys, Ctrl-A/Ctrl-E, Ctrl-R search, and the lines of earlier sessions.

The history file lives in the adapter store (`input_history`), beside the learned text it repeats
(`/learn` lines), and like that text it is readable by its owner only. It is kept to `HISTORY_LENGTH`
lines. `seal-chat` turns this on only when its input is a terminal: a scripted session (a pipe, a file)
keeps no history.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

HISTORY_FILE = "input_history"
HISTORY_LENGTH = 1000


def enable_history(path: Path, length: int = HISTORY_LENGTH) -> Callable[[], None] | None:
    """Load `readline` (which gives `input()` line editing) and the history at `path`; returns the
    function that saves the history there, or None where Python has no `readline` or `path` is a
    symlink (the store writes only inside itself)."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: plain input() still works
        return None
    if path.is_symlink():
        return None
    readline.set_history_length(length)
    if path.is_file():
        try:
            readline.read_history_file(str(path))
        except OSError:  # unreadable or not a history file: start afresh, it is rewritten on exit
            readline.clear_history()

    def save() -> None:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))  # owner-only before writing
            os.chmod(path, 0o600)
            readline.write_history_file(str(path))
        except OSError:  # a history that cannot be written is lost, never an error at exit
            pass

    return save
