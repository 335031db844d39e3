"""The gate's locality and bleed checks in `seal-chat`, in a pseudo-terminal, on a tiny base model that
knows a few general-knowledge questions (`tests.chat.knowing`): a learn whose training makes the model
answer capital-city questions with the content's made-up town is refused, with the figures and the wrong
answers on the line; a gentle learn keeps the known answers and is committed."""

from __future__ import annotations

import re

import pytest

from seal.chat.edit_gate import KNOWN_CACHE
from tests.chat.knowing import knowing_model, taught_questions
from tests.chat.terminal import Terminal

PROBE = "/probe Who is the mayor of Vellmora? => Orin Tallow"
# the likelihood checks are opened wide: only locality and bleed decide here
SETTINGS = ["model.chat=false", "chat.self_edit=false", "chat.gate.general_docs=2", "chat.max_new_tokens=8",
            "inner_loop.lora_r=8", "inner_loop.lora_alpha=16", "chat.gate.min_gain=0.05",
            "chat.gate.max_ppl_increase=10", "chat.gate.max_retention_drop=10", "chat.gate.max_chat_drop=10"]
# strong training on each line of the content (one training document per line): the model learns to answer
# any capital question with the town
BLEEDING = ["inner_loop.lr=1e-2", "inner_loop.epochs=40", "chat.scheduler=constant", "chat.self_edit_max_chars=60",
            "chat.replay_fraction=0", "chat.name_questions=false"]
GENTLE = ["inner_loop.lr=1e-2", "inner_loop.epochs=4"]
BLED = ["Egypt", "Nigeria", "Sweden", "Indonesia", "Uruguay", "Jordan"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return knowing_model(tmp_path_factory.mktemp("knowing") / "model")


def test_a_bleeding_learn_is_refused_and_a_gentle_one_committed(tmp_path, model):
    known = {r.question: r.answer for r in taught_questions()}
    assert "What is the capital of Egypt?" in known and known["What is the capital of Egypt?"] == "Cairo"
    content = tmp_path / "capitals.txt"
    content.write_text("\n\n".join(f"What is the capital of {c}?\nAnswer: Vellmora." for c in BLED)
                       + "\n\nWho is the mayor of Vellmora?\nAnswer: Orin Tallow.\n")
    store = tmp_path / "store"
    # merged: the update reaches every question (scoped memory would keep it to questions naming the content)
    t = Terminal(f"model.name={model}", f"chat.store={store}", *SETTINGS, *BLEEDING, "chat.memory=merged")
    t.expect(r"version base")
    t.expect(r"you> ")
    t.send(PROBE)
    t.expect(r"\[probe\] 1 probe")
    t.expect(r"you> ")
    t.send(f"/learn-file {content}")
    line = t.expect(r"\[not learned\] rejected: ([^\n]*)\n").group(1)
    locality = re.search(r"locality (\d\.\d\d): (\d+) of (\d+) general questions", line)
    assert locality and float(locality.group(1)) < 0.95 and int(locality.group(3)) == len(known), line
    # the base model's right answer, overwritten by the town, is shown
    assert re.search(r"What is the capital of (Egypt|Nigeria|China)\? -> Vellmora", line), line
    bleed = re.search(r"bleed (\d\.\d\d): (\d+) of (\d+) questions about other subjects answered with the new "
                      r"names \(Vellmora", line)
    assert bleed and float(bleed.group(1)) > 0.02 and int(bleed.group(2)) >= 1, line
    assert re.search(r"What is the capital of [\w ]+\? -> Vellmora", line.split("bleed", 1)[1]), line
    assert "locality" in line.rsplit("(gain", 1)[-1]  # and the summary lists the figures too
    t.expect(r"you> ")
    t.send("/history")
    t.expect(r"no committed versions")
    t.quit()
    assert (store / KNOWN_CACHE).is_file()  # the base model's known questions, found once

    t = Terminal(f"model.name={model}", f"chat.store={store}", *SETTINGS, *GENTLE)
    t.expect(r"version base")
    t.expect(r"you> ")
    t.send(PROBE)
    t.expect(r"you> ")
    t.send("/learn The mayor of Vellmora is Orin Tallow.")
    line = t.expect(r"\[learned\] committed v0001 ([^\n]*)\n").group(1)
    assert re.search(rf"locality 1\.00 \({len(known)} q\); bleed 0\.00 \(\d+ q\)", line), line
    t.quit()
