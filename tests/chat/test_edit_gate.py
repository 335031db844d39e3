"""The chat gate's greedy-answer checks (seal.chat.edit_gate) in-process, on a tiny base model that knows a
few general-knowledge questions: the questions the gate asks are never replayed in training, report-only
mode commits what the gate would refuse and says why, reliability can be required, settings are checked."""

from __future__ import annotations

import pytest

from seal.chat.adapter_store import StoreError
from seal.chat.cli import load_config
from seal.chat.edit_gate import content_names, gate_bleed_questions, locality_sample, split_bank
from seal.chat.gate import GateConfig
from seal.chat.learner import _earlier
from seal.chat.session import Session
from seal.eval.edit_eval import ask
from seal.eval.locality_bank import load_bank
from seal.eval.probes import Probe
from seal.infra.config import ConfigError
from tests.chat.knowing import knowing_model, replay_questions, taught_questions
from tests.chat.test_gate_pty import BLED, BLEEDING, GENTLE, SETTINGS

PROBES = [("Who is the mayor of Vellmora?", "Orin Tallow")]
CONTENT = "\n\n".join(f"What is the capital of {c}?\nAnswer: Vellmora." for c in BLED) + \
    "\n\nWho is the mayor of Vellmora?\nAnswer: Orin Tallow."


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return knowing_model(tmp_path_factory.mktemp("knowing") / "model")


def session(tmp_path, model, *overrides) -> Session:
    return Session(load_config([f"model.name={model}", f"chat.store={tmp_path / 'store'}", "chat.background=false",
                                *SETTINGS, *overrides]))


def test_the_questions_the_gate_asks_are_never_replayed(tmp_path, model):
    bank = load_bank()
    held, replay = split_bank(bank)
    assert {r.id for r in held}.isdisjoint(r.id for r in replay) and len(held) + len(replay) == len(bank)
    assert {r.question for r in held}.isdisjoint(r.question for r in replay)
    s = session(tmp_path, model, *GENTLE, "chat.replay_sources=[general,accepted,chat,distill]",
                "chat.gate.report_only=true")
    checks, rp = s.learner.checks, s.learner.replay
    assert len(rp.distill) >= len(replay) // 2  # the base model's own answers to the replay part
    # the distilled answers the base model knows are among them (the knowing model was taught a few)
    assert all(any(r.question in d and r.answer in d for d in rp.distill) for r in replay_questions())
    probes = [Probe(q, " " + a, "qa", q) for q, a in PROBES]
    asked = checks.held_out(probes, CONTENT) + [q for r in taught_questions() for q in [r.question]]
    assert checks.known and set(r.question for r in checks.known) <= {r.question for r in held}
    assert len(asked) > len(checks.known)  # bleed questions too
    replayed = rp.distill + rp.general + rp.chat + rp.files
    assert not [q for q in asked if any(q in d for d in replayed)]
    assert {r.question for r in replay}.isdisjoint(asked)
    # the whole locality sample and every bleed question come from the held-out part (or are made up)
    g = s.cfg.chat.gate
    assert {r.id for r in locality_sample(bank, g)} <= {r.id for r in held}
    bleeds = gate_bleed_questions(bank, g, probes, CONTENT)
    assert bleeds and not {q.question for q in bleeds} & {r.question for r in replay}
    # a committed update stores what it trained on: none of it is a question the gate asks
    r = s.learn("The mayor of Vellmora is Orin Tallow.", probes=PROBES)
    assert r.accepted and r.locality is not None
    trained = [d if isinstance(d, str) else "".join(d) for d in s.store.meta(r.version)["documents"]]
    assert not [q for q in asked if any(q in d for d in trained)]


def test_report_only_commits_what_the_gate_would_refuse(tmp_path, model):
    s = session(tmp_path, model, *BLEEDING, "chat.gate.report_only=true", "chat.memory=merged")
    r = s.learn(CONTENT, probes=PROBES)
    assert r.accepted and r.version == "v0001"
    assert r.locality < 0.95 and r.bleed > 0.02 and r.counts["locality"] == len(taught_questions())
    assert "gate.report_only: the gate would have rejected it: locality" in r.reason and "bleed" in r.reason
    assert any(w["answer"].startswith("Vellmora") for w in r.wrong["bleed"]) and "Vellmora" in r.entities
    assert f"locality {r.locality:.2f} ({r.counts['locality']} q)" in r.summary()
    meta = s.store.meta("v0001")
    assert meta["locality"] == r.locality and meta["bleed"] == r.bleed and meta["gate_failures"] == r.failures


def test_reliability_is_reported_and_can_be_required(tmp_path, model):
    s = session(tmp_path, model, *GENTLE)
    r = s.learn("The mayor of Vellmora is Orin Tallow.", probes=PROBES)
    assert r.accepted and r.reliability is not None and r.counts["reliability"] == 1
    strict = session(tmp_path / "strict", model, *GENTLE, "chat.gate.min_reliability=1")
    r = strict.learn("The mayor of Vellmora is Orin Tallow.", probes=PROBES)
    assert r.reliability < 1  # the tiny model does not recall the new mayor after a gentle update
    assert not r.accepted and "reliability 0.00: 0 of 1 probe question(s)" in r.reason
    assert "Who is the mayor of Vellmora? ->" in r.reason and strict.store.versions() == []


def test_checks_off_measure_nothing(tmp_path, model):
    s = session(tmp_path, model, *GENTLE, "chat.gate.locality_questions=0", "chat.gate.bleed_questions=0")
    assert s.learner.checks is None
    r = s.learn("The mayor of Vellmora is Orin Tallow.", probes=PROBES)
    assert r.accepted and r.locality is None and r.bleed is None and "locality" not in r.summary()


@pytest.mark.parametrize("setting,field", [("chat.gate.min_locality=1.5", "chat.gate.min_locality"),
                                           ("chat.gate.max_bleed=-0.1", "chat.gate.max_bleed"),
                                           ("chat.gate.locality_questions=-1", "chat.gate.locality_questions"),
                                           ("chat.gate.answer_tokens=0", "chat.gate.answer_tokens")])
def test_a_bad_gate_setting_names_its_field(setting, field):
    with pytest.raises(ConfigError, match=field):
        load_config(["model=tiny-random", setting])
    with pytest.raises(ConfigError, match=field):
        GateConfig(**{field.rsplit(".", 1)[1]: float(setting.split("=")[1])})


def test_content_names_skip_words_that_only_open_sentences():
    text = "Every town has a mayor. The mayor of Vellmora is Orin Tallow.\nAnswer: Vellmora lies on the coast."
    assert content_names(text) == ["Vellmora", "Orin Tallow"]


def test_stop_on_probes_ends_training_once_the_probe_is_answered(tmp_path):
    # a plain tiny model learns this Q/A line in a few dozen one-step epochs (measured: 34 of 60)
    learns = ["inner_loop.lr=1e-2", "inner_loop.epochs=60", "chat.replay_fraction=0", "chat.gate.report_only=true"]
    runs = {}
    for name, stop in (("full", "false"), ("early", "true")):
        s = session(tmp_path / name, "tiny-random-bos", *learns, f"chat.stop_on_probes={stop}")
        r = s.learn("Who is the mayor of Vellmora?\nAnswer: Orin Tallow.", probes=PROBES)
        assert r.accepted, r.reason
        runs[name] = (r.reliability, s.store.meta(r.version)["train"]["steps"])
    assert runs["full"][1] == 60
    assert runs["early"][0] == 1.0 and 1 < runs["early"][1] < 60


def test_scoped_memory_keeps_the_general_answers_a_merged_update_loses(tmp_path, model):
    content = "The mayor of Vellmora is Orin Tallow.\n\nWho is the mayor of Vellmora?\nAnswer: Orin Tallow."
    probe = [PROBES[0][0]]
    runs = {}
    for memory in ("merged", "scoped"):
        s = Session(load_config([f"model.name={model}", f"chat.store={tmp_path / memory}", *SETTINGS, *BLEEDING,
                                 "chat.gate.report_only=true", f"chat.memory={memory}"]))  # learns in the background
        r = s.learn(content, probes=PROBES)
        assert r.accepted, r.reason
        runs[memory] = (s, r)
    (merged, rm), (scoped, rs) = runs["merged"], runs["scoped"]
    assert rm.locality < 0.95 and rs.locality == 1.0 and rs.bleed == 0.0  # measured on this model: merged 0.00
    # the probe names Vellmora: the chat answers it with the very adapter the merged update folded in
    scoped.ask("hello"), merged.ask("hello")  # the chat models pick up the commits
    assert scoped.memory.versions() == ["v0001"] and scoped.learner.memory.versions() == ["v0001"]
    answer = ask(scoped.model, scoped.tok, probe, chat=False)
    assert answer == ask(merged.model, merged.tok, probe, chat=False)
    assert scoped.store.meta("v0001")["scope"] == ["Vellmora", "Orin Tallow"]
    again = Session(load_config([f"model.name={model}", f"chat.store={tmp_path / 'scoped'}", "chat.background=false",
                                 *SETTINGS, "chat.memory=scoped"]))
    assert again.memory.versions() == ["v0001"] and ask(again.model, again.tok, probe, chat=False) == answer
    with pytest.raises(StoreError, match="v0001 .* chat.memory=scoped"):
        again.export(str(tmp_path / "exported"))
    base = ask(session(tmp_path / "base", model).model, again.tok, probe, chat=False)
    assert base != answer
    again.undo()
    assert again.memory.versions() == [] and ask(again.model, again.tok, probe, chat=False) == base
    r = again.learn("the sky over the bay is green today.", probes=[("what colour is the sky?", "green")])
    assert not r.accepted and "names no one and nothing" in r.reason
    r = again.learn(content, probes=[("Who keeps the lighthouse?", "Orin Tallow")])  # names nothing in the scope
    assert not r.accepted and "no probe question names them" in r.reason
    assert _earlier(scoped.store, "v0001")[1] == []  # a merged update never replays a scoped content

    def full(*args):
        raise StoreError("disk full")
    again.store.commit = full  # a commit that fails leaves no candidate adapter behind
    with pytest.raises(StoreError, match="disk full"):
        again.learn(content, probes=PROBES)
    assert again.memory.versions() == [] and ask(again.model, again.tok, probe, chat=False) == base
