"""Co-LLM on tiny random models: the loss against its closed form, the two ends of the threshold,
lazy caching against recomputation, threshold choice and head training."""

from __future__ import annotations

import pytest
import torch
from conftest import distinct_model

from seal.decoding.co_llm import (
    CoLLMConfig,
    CoLLMGenerator,
    DeferralHead,
    _Objective,
    co_generate,
    defer_probs,
    eta_for_rate,
    eta_youden,
    token_features,
    train_head,
)
from seal.decoding.streams import Stream
from seal.generation.hf import HFGenerator, SamplingConfig

PROMPTS = ["In 1874 the town", "Write questions and answers about the passage. Q:", "Rewrite", "0123 yes no"]
EXAMPLES = [("Topic: Velmora\nWho founded it?", "Ansel Quorrin"), ("In 1874 the town", "of Velmora was founded"),
            ("Rewrite the passage", "yes no true false"), ("0123456789", "implications passage")]


@pytest.fixture(scope="module")
def pair():
    base, tok = distinct_model(0)
    asst, atok = distinct_model(1)
    head = DeferralHead(base.config.hidden_size)
    with torch.no_grad():
        head.proj.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    return Stream(base, tok, "base"), Stream(asst, atok, "assistant"), head


def greedy(stream: Stream, prompts=PROMPTS, n=12):
    return HFGenerator(stream.model, stream.tokenizer).generate(prompts, SamplingConfig(max_new_tokens=n))


def test_loss_equals_its_closed_form(pair):
    base, asst, head = pair
    feats = token_features(base, asst, EXAMPLES)
    loss = _Objective(head, "marginal", 8.0)(**feats)["loss"]
    terms = []
    for prompt, gold in EXAMPLES:  # recomputed from the models' full forwards, probabilities in float64
        p_ids = base.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        g_ids = base.tokenizer(gold, add_special_tokens=False)["input_ids"] + [base.tokenizer.eos_token_id]
        seq = torch.tensor([p_ids + g_ids])
        with torch.no_grad():
            ob = base.model(seq, output_hidden_states=True)
            oa = asst.model(seq)
        pb = torch.softmax(ob.logits[0].double(), -1)
        pa = torch.softmax(oa.logits[0].double(), -1)
        s = head(ob.hidden_states[-1][0]).double()
        for t, g in enumerate(g_ids):
            pos = len(p_ids) - 1 + t  # the position whose output predicts gold token t
            sig = 1 / (1 + torch.exp(-s[pos]))
            terms.append(-torch.log((1 - sig) * pb[pos, g] + sig * pa[pos, g]))
    closed = torch.stack(terms).mean()
    assert len(feats["weak"]) == len(terms)
    torch.testing.assert_close(loss.double(), closed, atol=1e-5, rtol=1e-5)


def test_weak_labels_mark_tokens_only_the_assistant_gets_right(pair):
    base, asst, _ = pair
    # the assistant is the base model itself: it is never right where the base is wrong
    assert token_features(base, Stream(base.model, base.tokenizer, "same"), EXAMPLES)["weak"].sum() == 0


def test_eta_one_gives_the_base_output_and_eta_zero_the_assistants(pair):
    base, asst, head = pair
    out1, c1 = co_generate(base, asst, head, PROMPTS, eta=1.0, max_new_tokens=12, batch_size=3)
    assert [o.text for o in out1] == greedy(base)
    assert not any(d for o in out1 for d in o.deferred) and c1["assistant_forwards"] == 0
    out0, _ = co_generate(base, asst, head, PROMPTS, eta=0.0, max_new_tokens=12, batch_size=3)
    assert [o.text for o in out0] == greedy(asst)
    assert all(o.deferred_fraction == 1.0 for o in out0)
    assert greedy(base) != greedy(asst)


def test_lazy_caching_equals_naive_recomputation(pair):
    base, asst, head = pair
    feats = token_features(base, asst, EXAMPLES)
    eta = float(defer_probs(head, feats["hidden"]).median())  # some tokens defer, some do not
    lazy, cl = co_generate(base, asst, head, PROMPTS, eta, max_new_tokens=16, batch_size=2)
    naive, cn = co_generate(base, asst, head, PROMPTS, eta, max_new_tokens=16, batch_size=2, lazy=False)
    assert [(o.tokens, o.deferred) for o in lazy] == [(o.tokens, o.deferred) for o in naive]
    mixed = [d for o in lazy for d in o.deferred]
    assert any(mixed) and not all(mixed)
    assert cl["assistant_forwards"] == cn["assistant_forwards"] < cl["base_forwards"]  # called only when deferring


def test_threshold_for_a_target_rate_and_youden():
    p = torch.linspace(0.01, 0.99, 100, dtype=torch.float64)
    for rate in (0.1, 0.25, 0.5, 0.9):
        assert float((p > eta_for_rate(p, rate)).double().mean()) == pytest.approx(rate, abs=0.011)
    assert eta_for_rate(p, 0.0) == 1.0 and eta_for_rate(p, 1.0) == 0.0
    labels = (p > 0.7).double()  # separable: Youden's J picks the boundary
    eta = eta_youden(p, labels)
    assert ((p > eta) == (labels > 0.5)).all()
    with pytest.raises(ValueError, match="both labels"):
        eta_youden(p, torch.zeros_like(p))


def test_training_lowers_the_marginal_likelihood_loss(pair):
    base, asst, _ = pair
    head = DeferralHead(base.model.config.hidden_size)
    feats = token_features(base, asst, EXAMPLES * 4)
    stats = train_head(head, feats, CoLLMConfig(init_epochs=3, epochs=20, lr=1e-2, batch_size=8), seed=0)
    assert stats["marginal_nll_after"] < stats["marginal_nll_before"] - 0.05
    assert head.proj.weight.abs().sum() > 0


def test_generator_refuses_sampling(pair):
    base, asst, head = pair
    gen = CoLLMGenerator(base, asst, head, eta=0.5)
    out = gen.generate(PROMPTS, SamplingConfig(max_new_tokens=6))
    assert len(out) == len(gen.last) == len(PROMPTS)
    with pytest.raises(ValueError, match="greedily"):
        gen.generate(PROMPTS, SamplingConfig(max_new_tokens=6, temperature=1.0))
