"""Learning a user's file (`/learn-file`): reading it safely, and the notice on where learned text is kept."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from seal.chat.moderation import LearnRefused


def read_text_file(path: str | Path, max_chars: int) -> str:
    """The text of a file to learn (`/learn-file`), read only as far as moderation could accept it:
    anything but a regular file (a device such as /dev/zero, a FIFO, a folder) is refused before a
    byte is read, and so is a file larger than `max_chars` characters can be in UTF-8."""
    path = Path(path).expanduser()
    limit = 4 * max_chars  # UTF-8 takes at most 4 bytes a character
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise LearnRefused(f"cannot read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LearnRefused(f"{path} is {_file_kind(st.st_mode)}, not a regular file: only text files can be "
                               f"learned")
        data = _read_at_most(fd, limit + 1) if st.st_size <= limit else b""
    finally:
        os.close(fd)
    if st.st_size > limit or len(data) > limit:
        raise LearnRefused(f"{path} is larger than {limit:,} bytes, more than moderation.max_chars={max_chars:,} "
                           f"characters can take; not read")
    return data.decode("utf-8", errors="replace")


def _read_at_most(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def stored_text_notice(store_root: Path) -> str:
    """What happens to learned text, said once before the first file is learned."""
    return (f"[notice] learned text is kept in full, as plain text, in {store_root}/versions/<version>/meta.json "
            f"(content, training documents, probes), so later updates can rehearse it; version folders are "
            f"readable only by you, and /undo keeps them: delete a version's folder to remove its text")
