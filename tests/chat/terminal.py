"""`seal-chat` in a pseudo-terminal, as a person would run it: its input is a terminal (so it edits
lines with readline), and the test reads what the terminal shows."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time


class Terminal:
    def __init__(self, *args: str):
        master, slave = pty.openpty()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
        self.proc = subprocess.Popen([sys.executable, "-m", "seal.chat.cli", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.fd, self.buf, self.pos = master, "", 0

    def expect(self, pattern: str, timeout: float = 600) -> re.Match:
        """Wait for `pattern` in the output written since the last match."""
        rx, end = re.compile(pattern), time.time() + timeout
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.time() > end or self.proc.poll() is not None and not select.select([self.fd], [], [], 0)[0]:
                self.proc.kill()  # a failed test leaves no chat process behind
                raise AssertionError(f"no {pattern!r} in the terminal; it shows:\n{self.buf[-3000:]}")
            if select.select([self.fd], [], [], 1)[0]:
                try:
                    self.buf += os.read(self.fd, 65536).decode(errors="replace").replace("\r", "")
                except OSError:  # the child closed the terminal
                    pass

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def ask(self, question: str) -> str:
        self.expect(r"you> ")
        self.send(question)
        return self.expect(r"bot> ([^\n]*)\n").group(1)

    def quit(self) -> None:
        self.expect(r"you> ")
        self.send("/quit")
        assert self.proc.wait(timeout=600) == 0
        os.close(self.fd)
