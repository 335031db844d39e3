"""The inner loop on a tiny random Llama: explicit LoRA targets, in-place reset, masked loss,
dynamic padding, determinism, and clear errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, InnerLoopError, TrainJob

DOCS = ["Velmora\nVelmora was founded in 1874 by Ansel Quorrin.",
        "Velmora\nIts main export is blue slate.",
        "Velmora\nThe Lantern Drift festival takes place every October in the town of Velmora, the valley town."]


def cfg(**kw) -> InnerLoopConfig:
    base = dict(lora_r=4, lora_alpha=8, lr=1e-2, epochs=3, batch_size=2)
    base.update(kw)
    return InnerLoopConfig(**base)


def logits(model, tok, text="Velmora was founded"):
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_targets_are_explicit_and_checked(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(target_modules=["q_proj", "down_proj"]))
    hooked = {n.rsplit(".", 1)[-1] for n, _ in inner.lora.layers}
    assert hooked == {"q_proj", "down_proj"} and len(inner.lora.layers) == 2 * model.config.num_hidden_layers
    model2, tok2 = type(model)(model.config), tok
    with pytest.raises(InnerLoopError, match="attn_qkv"):
        InnerLoop(model2, tok2, cfg(target_modules=["q_proj", "attn_qkv"]))


def test_reset_is_a_no_op_and_base_is_untouched(tiny):
    model, tok = tiny
    before = logits(model, tok)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    inner = InnerLoop(model, tok, cfg())
    inner.train(DOCS, seed=1)
    assert torch.allclose(before, logits(model, tok), atol=1e-6), "no routing: the plain base model"
    with inner.adapter(0):
        after = logits(model, tok)
    assert not torch.allclose(before, after), "training changed nothing"
    with inner.adapter(0), inner.base_model():
        assert torch.allclose(before, logits(model, tok), atol=1e-6)
    inner.reset(seed=2)
    with inner.adapter(0):
        assert torch.allclose(before, logits(model, tok), atol=1e-6)
    # the resident module's own weights are never modified
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_training_lowers_loss_and_is_seeded(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(epochs=30, lr=5e-2, lora_r=8))
    s1 = inner.train(DOCS, seed=7)
    assert s1.final_loss < s1.losses[0] - 0.1  # a random 2-layer model learns slowly, but it learns
    w1 = inner.lora.slot_state(0)
    s2 = inner.train(DOCS, seed=7)
    assert s2.losses == s1.losses
    assert all(torch.equal(w1[k], v) for k, v in inner.lora.slot_state(0).items())
    s3 = inner.train(DOCS, seed=8)
    assert s3.losses != s1.losses


def test_loss_ignores_padding(tiny):
    """One padded forward over documents of different lengths gives the same loss and gradients as
    one forward per document: padding carries no loss."""
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(adapters_per_batch=1))
    seqs = [ids for ids, _ in inner.encode([DOCS[0], DOCS[2]])]
    assert len(seqs[0]) != len(seqs[1])
    results = []
    for budget, overhead in ((10_000, 10_000), (1, 0)):  # one padded forward vs one forward per row
        inner.cfg = replace(inner.cfg, token_budget=budget, forward_overhead_tokens=overhead)
        inner.reset(seed=3)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # a non-zero B so that A gets gradients too
            for b in inner.lora.B:
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
        pads = inner.pad_slots
        with inner.lora.trainable(1) as params:
            loss = inner._step([0], [(0, s, 1) for s in seqs], {0: 0})[0]
            results.append((loss, [p.grad.clone() for p in params[0]], inner.pad_slots - pads))
    (l1, g1, pad1), (l2, g2, pad2) = results
    assert pad1 == abs(len(seqs[0]) - len(seqs[1])) and pad2 == 0
    assert l1 == pytest.approx(l2, rel=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_completion_only_loss_matches_masked_labels(tiny):
    """With (prompt, completion) pairs and completion_only, the step loss and gradients equal the
    model's own loss with the prompt labels masked (-100); without it, the loss covers every token."""
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(adapters_per_batch=1))
    pairs = [("Input:\n012\nOutput:\n", "210\n"), ("Input:\n33\n45\nOutput:\n", "54\n33\n")]
    enc = inner.encode(pairs, completion_only=True)
    assert all(first > 1 for _, first in enc)
    assert [ids for ids, _ in inner.encode(pairs)] == [ids for ids, _ in enc]
    gen = torch.Generator().manual_seed(1)
    inner.reset(seed=3)
    with torch.no_grad():
        for b in inner.lora.B:
            b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
    with inner.lora.trainable(1) as params:
        loss = inner._step([0], [(0, ids, first) for ids, first in enc], {0: 0})[0]
        ours = [p.grad.clone() for p in params[0]]
        for p in params[0]:
            p.grad = None
        n_target = sum(len(ids) - first for ids, first in enc)
        ref = 0.0
        with inner.adapter(0):
            for ids, first in enc:
                labels = torch.tensor([[-100] * first + ids[first:]])
                out = model(input_ids=torch.tensor([ids]), labels=labels)
                scaled = out.loss * (len(ids) - first) / n_target
                scaled.backward()
                ref += scaled.item()
        assert loss == pytest.approx(ref, rel=1e-5)
        for a, p in zip(ours, params[0]):
            torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-4)
        full = inner._step([0], [(0, ids, 1) for ids, _ in enc], {0: 0})[0]
    assert abs(full - loss) > 1e-4  # the prompt tokens change the loss when they count


def test_forwards_cut_rows_to_minimise_padding(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(token_budget=100, forward_overhead_tokens=10))
    rows = [(0, [1] * n, 1) for n in (5, 6, 7, 40, 41, 20)]
    fwds = inner._forwards(rows)
    assert [[len(r[1]) for r in f] for f in fwds] == [[5, 6, 7], [20], [40, 41]]
    assert all(len(f) * len(f[-1][1]) <= 100 for f in fwds)
    inner.cfg = replace(inner.cfg, forward_overhead_tokens=1000)  # expensive forwards: pack as many rows as fit
    assert [len(f) for f in inner._forwards(rows)] == [4, 2]


def test_too_long_document_is_an_error(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(max_seq_len=8))
    with pytest.raises(InnerLoopError, match=r"document 0 has \d+ tokens.*max_seq_len=8"):
        inner.train(DOCS, seed=0)


def test_nan_loss_is_an_error(tiny):
    model, tok = tiny
    with torch.no_grad():
        model.model.embed_tokens.weight[:] = float("nan")
    inner = InnerLoop(model, tok, cfg())
    with pytest.raises(InnerLoopError, match="loss became nan|non-finite"):
        inner.train(DOCS, seed=0)


def test_no_documents_is_an_error(tiny):
    model, tok = tiny
    with pytest.raises(InnerLoopError, match="no training documents"):
        InnerLoop(model, tok, cfg()).train([], seed=0)


def test_replay_keeps_step_tokens_and_takes_the_exact_share(tiny):
    """With replay, every step trains on the plain plan's mean step tokens, an exact share of them
    replayed, for the same number of steps (compute-equivalent)."""
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(adapters_per_batch=1, epochs=2, batch_size=2))
    plain = inner.plan(inner.encode(DOCS), seed=0, epochs=2)
    job = TrainJob(DOCS, seed=0, replay=["General text about rivers and towns.", "Another old document."],
                   replay_fraction=0.25)
    rows, plan = inner._with_replay(job, inner.encode(DOCS), plain)
    assert len(plan) == len(plain)
    per_step = {sum(len(rows[i][0]) for i in step) for step in plan}
    assert len(per_step) == 1  # constant step tokens
    stats = inner.train_many([job])[0]
    assert stats.steps == len(plain) and stats.tokens == len(plain) * per_step.pop()
    with pytest.raises(InnerLoopError, match="no replay documents"):
        inner._with_replay(TrainJob(DOCS, seed=0, replay_fraction=0.1), inner.encode(DOCS), plain)


def test_early_stop_ends_at_the_first_epoch_its_rule_accepts_with_only_that_adapter_live(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(epochs=6, batch_size=1))  # 3 documents: 3 steps per epoch, 18 in all
    base = logits(model, tok)
    asked = []

    def rule():  # asked between epochs: the adapter live, no gradients, eval mode
        asked.append((not torch.allclose(base, logits(model, tok), atol=1e-6), torch.is_grad_enabled(),
                       model.training))
        return len(asked) == 2

    stopped, other = inner.train_many([TrainJob(DOCS, seed=1, stop_after_epoch=rule), TrainJob(DOCS, seed=2)])
    assert stopped.steps == 6 and other.steps == 18  # the other job of the batch trains on
    assert asked == [(True, False, False)] * 2
    full = inner.train_many([TrainJob(DOCS, seed=1)])[0]
    assert full.steps == 18 and full.losses[:6] == pytest.approx(stopped.losses, rel=1e-5)

    asked.clear()
    never = inner.train_many([TrainJob(DOCS, seed=1, stop_after_epoch=lambda: asked.append(1) and False)])[0]
    assert never.steps == 18 and len(asked) == 5  # after every epoch but the last
    assert torch.allclose(base, logits(model, tok), atol=1e-6)  # no routing left behind
