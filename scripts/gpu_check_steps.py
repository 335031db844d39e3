"""The four steps of `scripts/gpu_check.py`, each a function (Setup) -> dict of results that raises on failure.

- `bench`: `scripts/bench_inner_loop.py`'s three pipelines (seal, plain PEFT + TRL, reference padding) on one
  randomly initialised model, with the per-step training losses of the jobs seal and the plain pipeline both ran
- `paper_7b`: one chunk of K inner loops (K from `inner_loop.memory_budget_gb`) with the paper's inner loop
  (ki_restem's: r=32 on q/v, batch 1, 10 epochs) on the 7B architecture, projected to a round of 750
- `restem`: one ReST-EM round end to end (`seal experiment=restem`, in this process) on a randomly initialised
  model saved as a folder, with what is still held when the M-step starts
- `multi_adapter`: K adapters trained in one batch against separate PEFT + torch AdamW runs, in bf16
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

import bench_inner_loop as bench
from seal.data.fictional import generate_passages
from seal.models.loading import ModelConfig

REPO = bench.REPO
PAPER_ROUND_LOOPS = 750  # 2 rounds of 50 contexts x 5 self-edits x 3 seeds: 750 inner loops a round (REFERENCE 1.1)
# batched vs separate in bf16: per job, |batched - separate| over all its LoRA weights, as a fraction of how far
# the separate run moved them from their shared initial values; and the largest per-step loss difference
UPDATE_TOL = 0.05
LOSS_TOL = 0.02
RESTEM_ARCH = dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,  # Qwen2.5-0.5B
                   num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                   rope_theta=1e6, tie_word_embeddings=True)
TINY = {  # small stand-ins of the same model type, for --tiny (CPU tests)
    "bench": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=4096, max_position_embeddings=2048,
                  tie_word_embeddings=True),
    "paper_7b": dict(model_type="qwen2", hidden_size=96, intermediate_size=192, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=4096, max_position_embeddings=4096,
                     tie_word_embeddings=False),
}


@dataclass
class Setup:
    device: str
    tiny: bool
    tok: object  # the tokenizer every model here is paired with
    tokenizer: str  # what it is, for the report
    work: Path  # scratch folder (model folders, run folders)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device == "cuda" else torch.float32

    def arch(self, name: str) -> dict:
        spec = dict(TINY[name] if self.tiny else {"bench": bench.ARCHS["Qwen/Qwen2.5-1.5B"],
                                                   "paper_7b": bench.ARCHS["Qwen/Qwen2.5-7B"]}[name])
        spec["vocab_size"] = max(spec["vocab_size"], len(self.tok))
        return spec


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def model_config(s: Setup) -> ModelConfig:
    # "tiny-random": the model is built here, not loaded (no folder for an engine worker)
    return ModelConfig(name="tiny-random", dtype=str(s.dtype).removeprefix("torch."), device=s.device)


# ------------------------------------------------------------------------------------------------ bench

def compare_curves(seal: dict, plain: dict, epochs: int, n: int) -> list[dict]:
    """The first n jobs both pipelines trained: their per-step losses side by side, the largest per-step
    difference, and per-epoch means (the two pipelines shuffle documents differently, so single steps see
    different documents; an epoch sees them all in both)."""
    out = []
    for seed in sorted(set(seal) & set(plain))[:n]:
        a, b = seal[seed], plain[seed]
        steps = min(len(a), len(b))
        per = steps // epochs if steps % epochs == 0 and steps else steps
        ea = [statistics.fmean(a[i:i + per]) for i in range(0, steps, per)]
        eb = [statistics.fmean(b[i:i + per]) for i in range(0, steps, per)]
        out.append({"seed": seed, "steps": [len(a), len(b)], "seal": a, "plain": b,
                    "max_abs_step_diff": max((abs(x - y) for x, y in zip(a, b)), default=None),
                    "epoch_means": {"seal": ea, "plain": eb},
                    "max_rel_epoch_diff": max((abs(x - y) / abs(y) for x, y in zip(ea, eb)), default=None)})
    return out


def step_bench(s: Setup) -> dict:
    argv = ["--device", s.device, "--seed", "0", "--ref-sample", "1"]
    argv += ["--passages", "2", "--edits", "2", "--plain-sample", "2", "--ref-steps", "3"] if s.tiny else \
        ["--passages", "6", "--edits", "2", "--plain-sample", "4"]
    args = bench.parser().parse_args(argv)
    args.arch = "tiny qwen2" if s.tiny else "Qwen/Qwen2.5-1.5B"  # the name the report prints
    model = bench.random_model(s.arch("bench"), s.device, s.dtype, s.tok)
    curves: dict = {}
    result, table, _ = bench.run(args, model, s.tok, model_config(s), curves=curves)
    del model
    release()
    epochs = yaml.safe_load((REPO / "seal/configs/inner_loop/default.yaml").read_text())["epochs"]
    return {"result": result, "table": table, "loss_curves": compare_curves(curves["seal"], curves["plain"], epochs, 3),
            "inner_loops_per_hour": result["per_hour"], "speedup_vs_plain": result["speedup_vs_plain"],
            "speedup_vs_reference": result["speedup_vs_reference"], "mfu_train": result["train_peak_fraction"],
            "mfu_train_plain": result["plain_train_peak_fraction"], "matmul_peak_tflops": result["matmul_peak_flops"] / 1e12,
            "peak_memory_gb": {k: result[k]["peak_memory_gb"] for k in ("seal", "plain", "reference")}}


# --------------------------------------------------------------------------------------------- paper_7b

def stand_in_self_edit(p) -> str:
    """A self-edit of the paper's shape, one implication per line (a random model writes only noise): each
    sentence of the passage restated, so the documents have the token counts of real ones."""
    sentences = [x.strip() for x in p.context.replace("\n", " ").split(". ") if x.strip()]
    return "\n".join(f"{x.rstrip('.')}. In other words, {x[0].lower()}{x[1:].rstrip('.')}." for x in sentences)


def paper_inner_loop(s: Setup):
    from seal.inner_loop.trainer import InnerLoopConfig

    paper = yaml.safe_load((REPO / "seal/configs/experiment/ki_restem.yaml").read_text())["inner_loop"]
    tiny = {"epochs": 2, "max_adapters": 4} if s.tiny else {}  # seconds on a CPU: fewer epochs, K capped at 4
    settings = {**paper, **tiny}
    return bench.section(InnerLoopConfig, "inner_loop", **settings), settings


def step_paper_7b(s: Setup) -> dict:
    from seal.domains.knowledge.self_edit import SelfEditConfig
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.graders import GraderConfig
    from seal.eval.qa import QAEvalConfig
    from seal.inner_loop.trainer import TrainJob

    cfg, settings = paper_inner_loop(s)
    qa, se = bench.section(QAEvalConfig, "qa_eval"), bench.section(SelfEditConfig, "self_edit")
    model = bench.random_model(s.arch("paper_7b"), s.device, s.dtype, s.tok)
    task = KnowledgeTask(model, s.tok, model_config(s), cfg, qa, GraderConfig(kind="match"), se)
    k = task.adapters_per_batch
    passages = generate_passages(k, seed=2000)
    items = [(p, stand_in_self_edit(p), "implications", 3000 + i) for i, p in enumerate(passages)]
    task.inner.train_many([TrainJob(task.documents(*items[0][:3]), seed=1, epochs=1)])  # warm-up, not timed
    with bench.PeakMemory(s.device) as mem:
        bench.sync(s.device)
        start = time.perf_counter()
        recs = task.adapt_and_evaluate_many(items)
        bench.sync(s.device)
        chunk_s = time.perf_counter() - start
    trained = [r for r in recs if "train" in r]
    if len(trained) != k:
        raise RuntimeError(f"{k - len(trained)} of {k} inner loops were skipped: {[r.get('skipped') for r in recs]}")
    train_s = trained[0]["train"]["seconds"]
    tokens = sum(r["train"]["tokens"] for r in trained)
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    peak = bench.matmul_peak(model, s.device, s.dtype)
    mfu = bench.train_flops(tokens, linear, task.inner.lora.params_per_slot()) / train_s / peak
    n_params = sum(p.numel() for p in model.parameters())
    task.inner.lora.remove()
    del task, model
    release()
    per_loop = chunk_s / k
    return {"arch": "tiny qwen2" if s.tiny else "Qwen/Qwen2.5-7B", "params_b": n_params / 1e9,
            "inner_loop": {**settings, "memory_budget_gb": cfg.memory_budget_gb}, "K": k, "chunk_seconds": chunk_s,
            "train_seconds": train_s, "eval_seconds": chunk_s - train_s, "seconds_per_loop": per_loop,
            "train_tokens_per_loop": tokens / k, "docs_per_loop": statistics.fmean(r["n_docs"] for r in trained),
            "steps_per_loop": statistics.fmean(r["train"]["steps"] for r in trained), "mfu_train": mfu,
            "peak_memory_gb": mem.gb, "round_loops": PAPER_ROUND_LOOPS,
            "projected_round_seconds": PAPER_ROUND_LOOPS * per_loop,
            "projected_round_hours": PAPER_ROUND_LOOPS * per_loop / 3600,
            "projected_round_hours_whole_chunks": math.ceil(PAPER_ROUND_LOOPS / k) * chunk_s / 3600}


# ---------------------------------------------------------------------------------------------- restem

RESTEM_OVERRIDES = ["experiment=restem", "wandb.mode=disabled", "data.num_passages=2", "eval_data.num_passages=2",
                    "restem.rounds=1", "restem.contexts_per_round=2", "self_edit.k=2", "restem.seeds_per_edit=1",
                    "restem.eval_passages=2", "self_edit.max_new_tokens=24", "inner_loop.epochs=2",
                    "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=8",
                    "m_step.effective_batch=1", "m_step.epochs=1", "m_step.lora_r=4", "m_step.lora_alpha=8",
                    "selection.rule=top_fraction", "selection.fraction=0.5", "inner_loop.adapters_per_batch=4"]


def live_models() -> int:
    from transformers import PreTrainedModel

    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), PreTrainedModel))  # type(): no proxies asked


def saved_dtypes(folder: Path) -> list[str]:
    from safetensors import safe_open

    found = set()
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            found |= {str(st.get_slice(k).get_dtype()) for k in st.keys()}
    return sorted(found)


def step_restem(s: Setup) -> dict:
    from hydra import compose, initialize_config_dir

    import seal.cli  # noqa: F401  (registers the run-dir resolver)
    import seal.rl.outer_loop as outer
    from seal.cli import run_experiment

    before = live_models()  # what this process held already (a test's own models)
    folder = s.work / "restem_model"
    spec = TINY["bench"] if s.tiny else RESTEM_ARCH
    model = bench.random_model(dict(spec, vocab_size=max(spec["vocab_size"], len(s.tok))), s.device, s.dtype, s.tok)
    model.save_pretrained(folder, safe_serialization=True)
    s.tok.save_pretrained(folder)
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    del model
    release()
    overrides = RESTEM_OVERRIDES + [f"model.name={folder}", f"model.device={s.device}", "model.dtype=auto"]
    with initialize_config_dir(config_dir=str(REPO / "seal" / "configs"), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    at_m_step: dict = {}
    real = outer.m_step_round

    def probe(rnd, settings, pairs):  # what the E-step left behind when the M-step starts
        at_m_step.update(live_models=live_models(), pairs=len(pairs))
        if s.device == "cuda":
            torch.cuda.synchronize()
            at_m_step.update(allocated_gb=torch.cuda.memory_allocated() / 2**30,
                             peak_before_gb=torch.cuda.max_memory_allocated() / 2**30)
        return real(rnd, settings, pairs)

    if s.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    outer.m_step_round = probe
    run = s.work / "restem_run"
    try:
        start = time.perf_counter()
        results = run_experiment(cfg, run)
        seconds = time.perf_counter() - start
    finally:
        outer.m_step_round = real
    keys = [json.loads(line)["key"] for line in (run / "records.jsonl").read_text().splitlines()]
    prefixes = sorted({"/".join(k.split("/")[:2]) for k in keys})
    policy = run / "policy_round1"
    held_out = {e["round"]: {c: v["accuracy"] for c, v in e["eval"].items()} for e in results["rounds"]}
    return {"model": "tiny qwen2" if s.tiny else "Qwen2.5-0.5B architecture", "weights_gb": weights_gb,
            "seconds": seconds, "overrides": overrides, "held_out_accuracy": held_out,
            "m_step": next((e.get("m_step") for e in results["rounds"] if e.get("m_step")), None),
            "e_step": next((e.get("e_step") for e in results["rounds"] if e.get("e_step")), None),
            "records": len(keys), "record_groups": prefixes, "at_m_step": at_m_step,
            "policy_saved_dtypes": saved_dtypes(policy) if policy.is_dir() else None,
            "live_models_before_run": before,
            "released_before_m_step": at_m_step.get("live_models", before + 1) <= before and (
                s.device != "cuda" or at_m_step["allocated_gb"] < 0.5 * weights_gb)}


# --------------------------------------------------------------------------------------- multi_adapter

MULTI_CFG = dict(lora_r=8, lora_alpha=16, lr=2e-3, epochs=3, batch_size=2, target_modules=["q_proj", "v_proj", "down_proj"],
                 max_grad_norm=1.0, adapters_per_batch=4, token_budget=256)  # small budget: several forwards a step


def separate_run(model, inner, job, init: dict, cfg) -> tuple[dict, list[float]]:
    """One job alone, the plain way: a PEFT adapter started from `init`, torch AdamW, a transformers schedule
    and gradient clipping, one document per forward; (its LoRA weights, its per-step losses)."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    peft_model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                  target_modules=list(cfg.target_modules)), adapter_name="x")
    named = {n.replace("base_model.model.", "").replace(".x.", "."): p for n, p in peft_model.named_parameters()
             if "lora_" in n}
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(init[n])
    encoded = inner.encode(job.documents)
    seqs = [ids for ids, _ in encoded]
    plan = inner.plan(encoded, job.seed, job.epochs or cfg.epochs)
    params = list(named.values())
    opt = torch.optim.AdamW(params, lr=job.lr or cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler(cfg.scheduler, opt, num_warmup_steps=0, num_training_steps=len(plan))
    peft_model.train()
    losses = []
    for step in plan:
        n_tok, total = sum(len(seqs[i]) - 1 for i in step), 0.0
        for i in step:  # each document weighted by its share of the step's target tokens
            ids = torch.tensor([seqs[i]], device=inner.device)
            loss = peft_model(input_ids=ids, labels=ids).loss * (len(seqs[i]) - 1) / n_tok
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(total)
    state = {n: p.detach().float().clone() for n, p in named.items()}
    peft_model.unload()
    return state, losses


def step_multi_adapter(s: Setup) -> dict:
    from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, TrainJob

    spec = TINY["bench"] if s.tiny else RESTEM_ARCH
    model = bench.random_model(dict(spec, vocab_size=max(spec["vocab_size"], len(s.tok))), s.device, torch.bfloat16,
                               s.tok, seed=3)
    cfg = InnerLoopConfig(**MULTI_CFG)
    inner = InnerLoop(model, s.tok, cfg)
    docs = [[f"{p.title}\n{x.strip()}." for x in p.context.split(". ") if x.strip()] for p in generate_passages(3, seed=7)]
    jobs = [TrainJob(docs[0], seed=11), TrainJob(docs[1], seed=12, lr=4e-3, epochs=4), TrainJob(docs[2], seed=13, epochs=2)]
    init = {}
    for j, job in enumerate(jobs):  # train_many resets each slot from its seed the same way
        inner.reset(job.seed, j)
        init[j] = inner.lora.slot_state(j)
    start = time.perf_counter()
    stats = inner.train_many(jobs)
    batched_s = time.perf_counter() - start
    got = {j: inner.lora.slot_state(j) for j in range(len(jobs))}
    inner.lora.remove()
    out = []
    start = time.perf_counter()
    for j, job in enumerate(jobs):
        want, losses = separate_run(model, inner, job, {k: v.to(s.device) for k, v in init[j].items()}, cfg)
        diff = math.sqrt(sum(((got[j][k].float() - want[k]) ** 2).sum().item() for k in want))
        moved = math.sqrt(sum(((want[k] - init[j][k].float()) ** 2).sum().item() for k in want))
        loss_diff = max(abs(a - b) for a, b in zip(stats[j].losses, losses))
        out.append({"seed": job.seed, "steps": stats[j].steps, "update_norm": moved, "diff_norm": diff,
                    "rel_update_diff": diff / moved, "max_loss_diff": loss_diff,
                    "losses_batched": stats[j].losses, "losses_separate": losses,
                    "ok": diff / moved <= UPDATE_TOL and loss_diff <= LOSS_TOL and len(losses) == stats[j].steps})
    separate_s = time.perf_counter() - start
    del inner, model
    release()
    return {"dtype": "bfloat16", "model": "tiny qwen2" if s.tiny else "Qwen2.5-0.5B architecture",
            "settings": MULTI_CFG, "tolerance": {"rel_update_diff": UPDATE_TOL, "max_loss_diff": LOSS_TOL},
            "jobs": out, "passed": all(o["ok"] for o in out), "batched_seconds": batched_s,
            "separate_seconds": separate_s}


STEPS = {"bench": step_bench, "paper_7b": step_paper_7b, "restem": step_restem, "multi_adapter": step_multi_adapter}
