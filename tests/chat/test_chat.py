"""Learning while chatting (seal.chat.session) on a tiny random model: gate, commit, persistence, undo,
background learning, moderation, and the probe helpers."""

from __future__ import annotations

import pytest
import torch

from seal.chat.cli import load_config
from seal.chat.moderation import LearnRefused
from seal.chat.probe_writing import cloze_probes, parse_probe_pairs, remember_request
from seal.chat.session import Session

FACT = "The lighthouse keeper of Vesk Harbour is named Orrin Tallow and he paints the tower green."
PROBE = [("Who keeps the Vesk Harbour lighthouse?", "Orrin Tallow")]


def session(tmp_path, *overrides, **kw) -> Session:
    # updates merged into the weights, which these tests read (scoped memory: test_scoped_memory, test_edit_gate)
    cfg = load_config(["model=tiny-random", f"chat.store={tmp_path / 'store'}", "chat.background=false",
                       "chat.memory=merged",
                       "chat.self_edit=false", "inner_loop.lr=1e-2", "inner_loop.epochs=4", "chat.probes=1",
                       "chat.gate.min_gain=0.05", "chat.gate.max_ppl_increase=10", "chat.gate.max_retention_drop=10",
                       "chat.gate.general_docs=2", "chat.max_new_tokens=8", *overrides])
    return Session(cfg, **kw)


@torch.no_grad()
def logits(s: Session) -> torch.Tensor:
    ids = s.tok("Who keeps the lighthouse?", return_tensors="pt")["input_ids"]
    return s.model(input_ids=ids).logits


def test_learn_commits_persists_and_undoes(tmp_path):
    s = session(tmp_path)
    base = logits(s)
    r = s.learn(FACT, probes=PROBE)
    assert r.accepted and r.version == "v0001" and r.gain >= 0.05 and r.retention_drop is None
    learned = logits(s)
    assert not torch.allclose(base, learned)
    meta = s.store.meta("v0001")
    assert meta["content"] == FACT and meta["gain"] == pytest.approx(r.gain) and meta["probes"][0]["answer"]
    s.close()

    again = session(tmp_path)  # a new session loads the committed version
    assert again.version == "v0001"
    torch.testing.assert_close(logits(again), learned)
    r2 = again.learn("Orrin Tallow also keeps three grey cats named Pim, Pam and Pum.",
                     probes=[("What are Orrin Tallow's cats called?", "Pim, Pam and Pum")])
    assert r2.accepted and r2.retention_drop is not None  # the first fact's probe is now a retention probe
    assert [h["version"] for h in again.history() if h["in_chain"]] == ["v0001", "v0002"]
    assert again.undo() == ("v0002", "v0001")
    torch.testing.assert_close(logits(again), learned, atol=1e-5, rtol=0)
    assert again.undo() == ("v0001", None)
    assert torch.equal(logits(again), base)  # back to the exact base weights
    again.close()
    assert session(tmp_path).version is None

    pinned = session(tmp_path, "chat.version=v0002")  # pinning loads a version and makes it HEAD
    assert pinned.version == "v0002" and pinned.store.head() == "v0002"
    assert pinned.store.meta("v0002")["lora_r"] == pinned.cfg.inner_loop.lora_r  # checked against the tensors on load
    to_base = session(tmp_path, "chat.version=base")  # `base` pins the base model
    assert to_base.version is None and to_base.store.head() is None


def test_gate_rejection_is_explained_and_changes_nothing(tmp_path):
    s = session(tmp_path, "chat.gate.min_gain=100")
    base = logits(s)
    r = s.learn(FACT, probes=PROBE)
    assert not r.accepted and r.version is None
    assert "gained" in r.reason and f"{r.gain:+.2f}" in r.reason and "min_gain=100" in r.reason
    assert "general perplexity" in r.summary()
    assert s.store.versions() == [] and torch.equal(logits(s), base)
    again = session(tmp_path, "chat.gate.max_ppl_increase=-1")  # any rise (or none) fails this one
    r = again.learn(FACT, probes=PROBE)
    assert not r.accepted and "perplexity rose" in r.reason
    strict = session(tmp_path, "chat.gate.max_chat_drop=-100")  # the everyday replies are measured too
    r = strict.learn(FACT, probes=PROBE)
    assert not r.accepted and "everyday replies lost" in r.reason and r.chat_drop is not None


def test_background_learning_keeps_the_chat_usable(tmp_path):
    s = session(tmp_path, "chat.background=true", "inner_loop.epochs=30")
    base = logits(s)
    future = s.learn(FACT, probes=PROBE, wait=False)
    reply = s.ask("hello")  # answered while the learner trains its own copy
    assert isinstance(reply, str) and s.status()["queued"] in (0, 1)
    result = future.result()
    assert result.accepted
    if not future.done():
        pytest.fail("learning did not finish")
    assert s.status()["version"] == "v0001"  # the chat model picked up the commit
    learned = logits(s)
    assert not torch.allclose(base, learned)
    ids = s.tok("Who keeps the lighthouse?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(s.learner_model(input_ids=ids).logits, learned, atol=1e-5, rtol=0)
    s.close()


@pytest.mark.parametrize("content,why", [("", "empty"), ("  ", "empty"), ("x" * 30_000, "more than"),
                                         ("abc\x00def" * 10, "binary"), ("\x01\x02\x03" * 20, "binary")])
def test_moderation_refuses_with_a_reason(tmp_path, content, why):
    s = session(tmp_path)
    with pytest.raises(LearnRefused, match=why):
        s.learn(content)
    assert not s.busy() and s.store.versions() == []


def test_remember_requests():
    assert remember_request("remember that the vault code is 4471") == "The vault code is 4471"
    assert remember_request("Please remember that Orrin has three cats.") == "Orrin has three cats."
    assert remember_request("I remember that day") is None
    assert remember_request("what is the capital of France?") is None
    assert remember_request("remember that") is None


def test_probe_helpers():
    text = "Q: Who keeps the lighthouse?\nA: Orrin Tallow\nQ: What colour is Orrin Tallow?\nA: Orrin Tallow\n" \
           "Q: What colour is the tower?\nA: blue\nQ: What colour is the tower?\nA: green."
    # kept: answer in the content and not in the question; dropped: answer in the question, answer not in content
    assert parse_probe_pairs(text, FACT) == [("Who keeps the lighthouse?", "Orrin Tallow"),
                                             ("What colour is the tower?", "green")]
    (p,) = cloze_probes(FACT, 2)
    assert p.kind == "cloze" and (p.prompt + p.answer).replace(" ", "") == FACT.rstrip(".").replace(" ", "")
    assert cloze_probes("Too short.", 3) == []


def test_a_self_edit_format_the_learner_cannot_honour_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    """The learner trains every update with inner_loop's lr and epochs on one single-call self-edit: a
    directive format (its lr/epochs would be ignored) or a multi-call one is refused at once."""
    from seal.chat import session as session_module
    from seal.infra.config import ConfigError

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr(session_module, "load_model", no_model)
    with pytest.raises(ConfigError, match=r"self_edit.format=implications-hp: .*training directive"):
        session(tmp_path, "chat.self_edit=true", "self_edit.format=implications-hp")
    with pytest.raises(ConfigError, match=r"self_edit.format=entigraph: seal-chat writes each self-edit in one"):
        session(tmp_path, "chat.self_edit=true", "self_edit.format=entigraph")
    with pytest.raises(AssertionError, match="model was loaded"):  # without a self-edit the format is unused
        session(tmp_path, "chat.self_edit=false", "self_edit.format=implications-hp")
