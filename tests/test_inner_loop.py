"""The inner loop on a tiny random Llama: explicit LoRA targets, in-place reset, masked loss,
dynamic padding, determinism, and clear errors."""

from __future__ import annotations

import pytest
import torch

from seal.inner_loop import InnerLoop, InnerLoopConfig, InnerLoopError

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
    wrapped = {n.rsplit(".", 1)[-1] for n, m in inner.model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {"q_proj", "down_proj"}
    model2, tok2 = type(model)(model.config), tok
    with pytest.raises(InnerLoopError, match="attn_qkv"):
        InnerLoop(model2, tok2, cfg(target_modules=["q_proj", "attn_qkv"]))


def test_reset_is_a_no_op_and_base_is_untouched(tiny):
    model, tok = tiny
    before = logits(model, tok)
    inner = InnerLoop(model, tok, cfg())
    inner.train(DOCS, seed=1)
    after = logits(inner.model, tok)
    assert not torch.allclose(before, after), "training changed nothing"
    with inner.base_model():
        assert torch.allclose(before, logits(inner.model, tok), atol=1e-6)
    inner.reset(seed=2)
    assert torch.allclose(before, logits(inner.model, tok), atol=1e-6)
    # the same resident module, never a reloaded or copied model
    assert inner.model.get_base_model() is model


def test_training_lowers_loss_and_is_seeded(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg(epochs=30, lr=5e-2, lora_r=8))
    s1 = inner.train(DOCS, seed=7)
    assert s1.final_loss < s1.losses[0] - 0.1  # a random 2-layer model learns slowly, but it learns
    w1 = [p.detach().clone() for p in inner.lora_parameters()]
    s2 = inner.train(DOCS, seed=7)
    assert s2.losses == s1.losses
    assert all(torch.equal(a, b) for a, b in zip(w1, inner.lora_parameters()))
    s3 = inner.train(DOCS, seed=8)
    assert s3.losses != s1.losses


def test_loss_ignores_padding(tiny):
    """A padded batch's loss equals the token-weighted mean of the unpadded per-document losses."""
    model, tok = tiny
    inner = InnerLoop(model, tok, cfg())
    seqs = inner.encode([DOCS[0], DOCS[2]])
    assert len(seqs[0]) != len(seqs[1])
    batch = inner._batch(seqs)
    assert batch["input_ids"].shape[1] == max(len(s) for s in seqs)  # dynamic padding
    with torch.no_grad():
        padded = inner.model(**batch).loss.item()
        parts = [(inner.model(**inner._batch([s])).loss.item(), len(s) - 1) for s in seqs]
    expected = sum(loss * n for loss, n in parts) / sum(n for _, n in parts)
    assert padded == pytest.approx(expected, rel=1e-4)
    # the final EOS of each document is trained on even though pad == eos
    assert (batch["labels"][0, : len(seqs[0])] == batch["input_ids"][0, : len(seqs[0])]).all()
    assert (batch["labels"][0, len(seqs[0]):] == -100).all()


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
    with pytest.raises(InnerLoopError, match="loss became nan"):
        inner.train(DOCS, seed=0)


def test_no_documents_is_an_error(tiny):
    model, tok = tiny
    with pytest.raises(InnerLoopError, match="no training documents"):
        InnerLoop(model, tok, cfg()).train([], seed=0)
