"""Batched multi-adapter training equals K separate single-adapter runs (PEFT + torch AdamW +
transformers scheduler, the plain way), and routed batched generation equals per-adapter,
unbatched greedy generation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from seal.generation.hf import HFGenerator, SamplingConfig
from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, InnerLoopError, TrainJob

DOCS = [
    ["Velmora\nVelmora was founded in 1874 by Ansel Quorrin.", "Velmora\nIts main export is blue slate.",
     "Velmora\nThe Lantern Drift festival takes place every October in the valley town of Velmora."],
    ["Tarvik\nThe Tarvik river is 212 km long.", "Tarvik\nIt rises in the Oss hills and feeds Lake Amber."],
    ["Quorrin\nAnsel Quorrin was a slate merchant born in 1839.", "Quorrin\nHe founded Velmora.",
     "Quorrin\nHis daughter Ide ran the quarry after him.", "Quorrin\nHe died in 1901 in Velmora."],
]
CFG = dict(lora_r=4, lora_alpha=8, lr=2e-2, epochs=3, batch_size=2, target_modules=["q_proj", "v_proj", "down_proj"],
           weight_decay=0.01, max_grad_norm=0.05)  # a small clip norm so clipping really acts


def separate_run(model, tok, cfg: InnerLoopConfig, docs, seed, lr, epochs):
    """The plain single-adapter run: PEFT LoRA, torch AdamW, a transformers schedule, grad clip."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    helper = InnerLoop(copy.deepcopy(model), tok, InnerLoopConfig(**{**CFG, "adapters_per_batch": 1}))
    model = copy.deepcopy(model)
    peft_model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                  target_modules=cfg.target_modules,
                                                  layers_to_transform=list(cfg.layers_to_transform) or None),
                                 adapter_name="x")
    with torch.random.fork_rng(devices=[]):  # PEFT's own init, reseeded as InnerLoop.reset does
        torch.manual_seed(seed)
        for m in peft_model.modules():
            if hasattr(m, "reset_lora_parameters") and hasattr(m, "lora_A"):
                m.reset_lora_parameters("x", True)
    encoded = helper.encode(docs)
    seqs = [ids for ids, _ in encoded]
    plan = helper.plan(encoded, seed, epochs)
    params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler(cfg.scheduler, opt, num_warmup_steps=0, num_training_steps=len(plan))
    peft_model.train()
    for step in plan:
        n_tok = sum(len(seqs[i]) - 1 for i in step)
        for i in step:  # one document at a time, each weighted by its share of the step's tokens
            ids = torch.tensor([seqs[i]])
            out = peft_model(input_ids=ids, labels=ids)
            (out.loss * (len(seqs[i]) - 1) / n_tok).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
    state = {n.replace("base_model.model.", "").replace(".x", ""): p.detach() for n, p in peft_model.named_parameters()
             if "lora_" in n}
    return state


def test_batched_adapters_equal_separate_runs(tiny):
    model, tok = tiny
    reference = copy.deepcopy(model)
    cfg = InnerLoopConfig(**CFG, adapters_per_batch=4, token_budget=64)  # small budget: several forwards per step
    inner = InnerLoop(model, tok, cfg)
    jobs = [TrainJob(DOCS[0], seed=11), TrainJob(DOCS[1], seed=12, lr=5e-2, epochs=5),
            TrainJob(DOCS[2], seed=13, epochs=2)]
    stats = inner.train_many(jobs)
    assert all(s.steps > 0 for s in stats)
    assert [s.steps for s in stats] == [6, 5, 4]  # per-job epochs: ceil(docs / batch) x epochs
    for slot, job in enumerate(jobs):
        want = separate_run(reference, tok, cfg, job.documents, job.seed, job.lr or cfg.lr, job.epochs or cfg.epochs)
        got = inner.lora.slot_state(slot)
        assert set(want) == set(got)
        moved = max((want[k] - inner.lora.slot_state(3)[k]).abs().max().item() for k in want if "lora_B" in k)
        assert moved > 1e-3  # training really changed the adapter
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=2e-5, rtol=1e-4, msg=f"slot {slot} {k}")


def test_a_band_of_layers_trains_those_layers_only_as_peft_does(tiny):
    model, tok = tiny
    n = model.config.num_hidden_layers
    assert n >= 2
    band = [n - 1]
    reference = copy.deepcopy(model)
    cfg = InnerLoopConfig(**CFG, adapters_per_batch=1, layers_to_transform=band)
    inner = InnerLoop(model, tok, cfg)
    assert inner.adapter_info()["layers"] == len(cfg.target_modules) and inner.adapter_info()["layers_to_transform"] == band
    inner.train_many([TrainJob(DOCS[0], seed=11)])
    got = inner.lora.slot_state(0)
    assert got and all(f".layers.{n - 1}." in k for k in got)
    want = separate_run(reference, tok, cfg, DOCS[0], 11, cfg.lr, cfg.epochs)
    assert set(want) == set(got)
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=2e-5, rtol=1e-4, msg=k)
    with pytest.raises(InnerLoopError, match=rf"layers_to_transform: \[{n}\] are not decoder layers .*0\.\.{n - 1}"):
        InnerLoop(copy.deepcopy(reference), tok, InnerLoopConfig(**CFG, layers_to_transform=[0, n]))


def test_failed_job_does_not_disturb_the_others(tiny):
    model, tok = tiny
    cfg = InnerLoopConfig(**CFG, adapters_per_batch=3, max_seq_len=60)
    inner = InnerLoop(model, tok, cfg)
    alone = InnerLoop(copy.deepcopy(model), tok, InnerLoopConfig(**CFG, adapters_per_batch=1, max_seq_len=60))
    out = inner.train_many([TrainJob(DOCS[1], 5), TrainJob(["x " * 200], 6), TrainJob([], 7)])
    assert "max_seq_len=60" in str(out[1]) and "no training documents" in str(out[2])
    alone.train(DOCS[1], seed=5)
    for k, v in alone.lora.slot_state(0).items():
        torch.testing.assert_close(inner.lora.slot_state(0)[k], v, atol=1e-6, rtol=1e-5)


def test_nan_in_one_slot_is_reported_for_that_slot_only(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, InnerLoopConfig(**CFG, adapters_per_batch=2))
    out = inner.train_many([TrainJob(DOCS[0], 1, lr=1e30), TrainJob(DOCS[1], 2)])
    assert not isinstance(out[1], Exception) and math.isfinite(out[1].final_loss)
    assert isinstance(out[0], Exception) and ("non-finite" in str(out[0]) or "loss became" in str(out[0]))


def test_routed_batched_generation_equals_unbatched(tiny):
    model, tok = tiny
    inner = InnerLoop(model, tok, InnerLoopConfig(**CFG, adapters_per_batch=3))
    inner.train_many([TrainJob(DOCS[0], 1), TrainJob(DOCS[1], 2), TrainJob(DOCS[2], 3)])
    gen = HFGenerator(model, tok, router=inner.lora)
    prompts = ["Velmora was", "The Tarvik river", "Ansel Quorrin was a", "Who founded Velmora?", "Lake"]
    slots = [0, 1, 2, -1, 1]
    greedy = SamplingConfig(max_new_tokens=8, temperature=0.0, batch_size=16)
    batched = gen.generate(prompts, greedy, adapters=slots)
    one = SamplingConfig(max_new_tokens=8, temperature=0.0, batch_size=1)
    singles = []
    for p, s in zip(prompts, slots):
        if s < 0:
            with inner.base_model():
                singles += gen.generate([p], one)
        else:
            with inner.adapter(s):
                singles += gen.generate([p], one)
    assert batched == singles
    assert len(set(singles[:3])) > 1  # the adapters really differ


def test_memory_budget_chooses_k(tiny):
    model, tok = tiny
    small = InnerLoop(copy.deepcopy(model), tok, InnerLoopConfig(**CFG, memory_budget_gb=0.001))
    large = InnerLoop(model, tok, InnerLoopConfig(**CFG, memory_budget_gb=0.01))
    per = small.lora.params_per_slot() * 16
    assert small.slots == min(int(0.001 * 2**30 // per), 32) and large.slots > small.slots


def test_merge_folds_an_adapter_into_the_base(tiny):
    """After training, the merged base without adapters gives the adapted model's logits, and the
    merged slot is a no-op (so the next self-edit starts from the merged model)."""
    model, tok = tiny
    inner = InnerLoop(model, tok, InnerLoopConfig(**{**CFG, "adapters_per_batch": 2}))
    inner.train_many([TrainJob(["Velmora was founded in 1874.", "Its export is slate."], seed=1)])
    ids = tok("Velmora was founded", return_tensors="pt")
    with torch.no_grad(), inner.adapter(0):
        adapted = model(**ids).logits
    with torch.no_grad(), inner.base_model():
        before = model(**ids).logits
    assert not torch.allclose(adapted, before, atol=1e-4)
    inner.lora.merge(0)
    with torch.no_grad(), inner.base_model():
        merged = model(**ids).logits
    with torch.no_grad(), inner.adapter(0):
        slot_after = model(**ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(slot_after, merged, atol=1e-6, rtol=1e-5)
