"""Inner-loop throughput, three pipelines side by side on the same passages, self-edits,
hyperparameters and seeds, in one run:

  (a) seal      - K adapters trained in one forward/backward, least-padding forward cuts, all
                  questions of all adapters in one generate call, the baseline computed once
  (b) plain     - what a careful user writes: model loaded once, a fresh `get_peft_model` per
                  self-edit, TRL's SFTTrainer with dynamic padding, one `generate` per question,
                  the baseline recomputed for every self-edit
  (c) reference - the reference code's training: every document padded to 2048 tokens with the loss
                  on padding, batch 1 (on CPU only its first `--ref-steps` steps are timed and the
                  full inner loop is extrapolated: one full loop there takes most of an hour)

It prints inner loops per hour for each, the ratios, the training phase's achieved FLOP/s as a
fraction of a matmul peak measured in this same run, peak memory and each pipeline's accuracy.
The last line is `speedup_vs_plain=<x> speedup_vs_reference=<y> train_peak_fraction=<z>`.

    python scripts/bench_inner_loop.py --out experiments/bench_inner_loop_cpu          # SmolLM2, CPU
    python scripts/bench_inner_loop.py --arch Qwen/Qwen2.5-1.5B --device cuda --out ... # random init, GPU
    python scripts/bench_inner_loop.py --arch Qwen/Qwen2.5-1.5B --device cuda --backend vllm  # + (a) on vLLM

`--arch` builds a randomly initialised model from a bundled config of that architecture (no
download); accuracy is then meaningless, the timings are not. `--profile` adds a torch profile of
one seal chunk (top ops by self time) to show where the time goes.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seal.data.fictional import generate_passages
from seal.data.passage import Passage
from seal.domains.knowledge.self_edit import SelfEditConfig
from seal.domains.knowledge.task import KnowledgeTask
from seal.eval.graders import GraderConfig, MatchGrader
from seal.eval.qa import QAEvalConfig, qa_prompts
from seal.generation.backends import BackendConfig
from seal.inner_loop.trainer import InnerLoopConfig
from seal.models.loading import ModelConfig, load_model, model_folder, uses_chat

ARCHS = {  # configs of real architectures, for randomly initialised models on a machine with no hub
    "Qwen/Qwen2.5-1.5B": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                              num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                              max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True),
    "Qwen/Qwen2.5-7B": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                            num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                            max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=False),
}


# ----------------------------------------------------------------------------------------- measuring

class PeakMemory:
    """Peak memory during a block: CUDA allocator peak on GPU, sampled process RSS on CPU."""

    def __init__(self, device: str):
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            import psutil

            self.proc, self.stop = psutil.Process(), False
            self.base = self.proc.memory_info().rss
            self.peak = self.base

            def sample():
                while not self.stop:
                    self.peak = max(self.peak, self.proc.memory_info().rss)
                    time.sleep(0.05)
            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.stop = True
            self.thread.join()

    @property
    def gb(self) -> float:
        return self.peak / 2**30


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(model, device: str, dtype) -> float:
    """FLOP/s of the model's largest linear layer shape on a large batch of tokens (best of 5)."""
    shapes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    d_in, d_out = max(shapes, key=lambda s: s[0] * s[1] if s[1] < 50_000 else 0)  # not the LM head
    n = 4096 if device == "cuda" else 2048
    a = torch.randn(n, d_in, device=device, dtype=dtype)
    b = torch.randn(d_in, d_out, device=device, dtype=dtype)
    best = math.inf
    for _ in range(7):
        sync(device)
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / 3)
    return 2 * n * d_in * d_out / best


def train_flops(tokens: int, linear_params: int, lora_params: int) -> float:
    """Frozen base: forward 2N and input-gradient 2N per token; LoRA adds forward, input- and
    weight-gradient (6 per parameter per token). Attention score FLOPs are left out (small here)."""
    return tokens * (4 * linear_params + 6 * lora_params)


# ----------------------------------------------------------------------------------------- pipelines

@contextmanager
def recorded_losses(inner, curves: dict | None):
    """Inside this block each job `inner.train_many` trains puts its per-step losses (which it computes
    anyway; the records keep only the first and last) into `curves` under the job's seed."""
    if curves is None:
        yield
        return
    train_many = inner.train_many

    def recording(jobs):
        out = train_many(jobs)
        curves.update({j.seed: list(s.losses) for j, s in zip(jobs, out) if not isinstance(s, Exception)})
        return out
    inner.train_many = recording
    try:
        yield
    finally:
        del inner.train_many  # the class's method again


def seal_pipeline(task: KnowledgeTask, items, passages, device, curves: dict | None = None):
    """(a): base accuracy once per passage, then the inner loops K at a time. With `curves`, each
    trained job's per-step losses go there under its seed."""
    inner = task.inner
    inner.pad_slots = inner.total_slots = 0
    sync(device)
    t0 = time.perf_counter()
    base = task.base_accuracies(passages)
    outs, train_s, tokens = [], 0.0, 0
    k = task.adapters_per_batch
    with recorded_losses(inner, curves):
        for c in range(0, len(items), k):
            chunk = items[c:c + k]
            res = task.adapt_and_evaluate_many(chunk)
            outs += res
            done = [r for r in res if "train" in r]
            if done:
                train_s += done[0]["train"]["seconds"]  # the chunk trained together: one wall time
                tokens += sum(r["train"]["tokens"] for r in done)
    sync(device)
    total = time.perf_counter() - t0
    return {"seconds": total, "train_seconds": train_s, "train_tokens": tokens, "pad_fraction": inner.pad_fraction,
            "accuracies": [r.get("accuracy", 0.0) for r in outs],
            "base_accuracy": statistics.fmean(a for a, _ in base)}


def answer_one_by_one(model, tok, prompts: list[str], max_new_tokens: int, device) -> list[str]:
    out = []
    for p in prompts:
        enc = tok(p, return_tensors="pt", add_special_tokens=False).to(device)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 temperature=None, top_p=None, top_k=None)
        out.append(tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def grade(p: Passage, answers: list[str]) -> float:
    from seal.eval.graders import GradeItem

    g = MatchGrader().grade([GradeItem(question=q.question, gold=q.answer, answer=a) for q, a in zip(p.questions, answers)])
    return sum(x.correct for x in g) / len(g)


def plain_pipeline(model, tok, cfg: InnerLoopConfig, items, docs, qa: QAEvalConfig, chat, device, dtype_name,
                   curves: dict | None = None):
    """(b): fresh PEFT adapter and TRL SFTTrainer per self-edit; one generate per question;
    the baseline recomputed every time. With `curves`, the trainer logs its loss every step (as (a)
    records it) and each job's losses go there under its seed."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import SFTConfig, SFTTrainer

    accs, train_s, tokens = [], 0.0, 0
    sync(device)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for (p, _, _, seed), d in zip(items, docs):
            prompts = qa_prompts([p], qa, tok, chat)
            base_answers = answer_one_by_one(model, tok, prompts, qa.max_new_tokens, device)  # recomputed
            grade(p, base_answers)
            peft_model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                          lora_dropout=cfg.lora_dropout,
                                                          target_modules=list(cfg.target_modules),
                                                          task_type="CAUSAL_LM"))
            args = SFTConfig(output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                             gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr,
                             lr_scheduler_type=cfg.scheduler, warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio
                             max_grad_norm=cfg.max_grad_norm, weight_decay=cfg.weight_decay, max_length=cfg.max_seq_len,
                             gradient_checkpointing=False,  # TRL turns it on by default: recompute costs time
                             logging_steps=1 if curves is not None else 1000, save_strategy="no", report_to="none",
                             seed=seed, data_seed=seed,
                             use_cpu=device == "cpu", disable_tqdm=True, dataloader_num_workers=0,
                             bf16=dtype_name == "bfloat16" and device == "cuda", fp16=False)
            trainer = SFTTrainer(model=peft_model, args=args, train_dataset=Dataset.from_dict({"text": d}),
                                 processing_class=tok)
            sync(device)
            ts = time.perf_counter()
            trainer.train()
            sync(device)
            train_s += time.perf_counter() - ts
            if curves is not None:
                curves[seed] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            tokens += sum(len(tok(x)["input_ids"]) + 1 for x in d) * cfg.epochs
            peft_model.eval()
            accs.append(grade(p, answer_one_by_one(peft_model, tok, prompts, qa.max_new_tokens, device)))
            model = peft_model.unload()  # back to the plain base model for the next self-edit
            del trainer, peft_model
            gc.collect()
    sync(device)
    return {"seconds": time.perf_counter() - t0, "train_seconds": train_s, "train_tokens": tokens,
            "accuracies": accs}, model


def reference_pipeline(model, tok, cfg: InnerLoopConfig, items, docs, qa: QAEvalConfig, chat, device,
                       max_steps: int | None, pad_to: int = 2048):
    """(c): each document padded to `pad_to` with labels on every position (loss on padding), batch 1.
    With `max_steps`, only that many training steps per self-edit run and the rest is extrapolated."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    accs, per_loop, steps_done, step_s = [], [], 0, 0.0
    for (p, _, _, seed), d in zip(items, docs):
        sync(device)
        t0 = time.perf_counter()
        prompts = qa_prompts([p], qa, tok, chat)
        answer_one_by_one(model, tok, prompts, qa.max_new_tokens, device)
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
        enc = [tok(x, padding="max_length", max_length=pad_to, truncation=True, return_tensors="pt")["input_ids"]
               for x in d]
        params = [q for q in peft_model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        total = len(enc) * cfg.epochs
        sched = get_scheduler(cfg.scheduler, opt, num_warmup_steps=0, num_training_steps=total)
        run = total if max_steps is None else min(total, max_steps)
        peft_model.train()
        sync(device)
        ts = time.perf_counter()
        for s in range(run):
            ids = enc[s % len(enc)].to(device)
            peft_model(input_ids=ids, labels=ids).loss.backward()  # the pad tokens are labels too
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad()
        sync(device)
        took = time.perf_counter() - ts
        steps_done += run
        step_s += took
        peft_model.eval()
        te = time.perf_counter()
        answers = answer_one_by_one(peft_model, tok, prompts, qa.max_new_tokens, device)
        eval_s = time.perf_counter() - te
        if run == total:
            accs.append(grade(p, answers))
        per_loop.append((te - t0) - took + took * total / run + eval_s)
        model = peft_model.unload()
        del peft_model, opt
        gc.collect()
    return {"seconds_per_loop": statistics.fmean(per_loop), "train_step_seconds": step_s / steps_done,
            "accuracies": accs, "extrapolated": max_steps is not None}, model


# ----------------------------------------------------------------------------------------------- main

def section(cls, group: str, **changes):
    """A config section as its group's default file sets it (nested sections typed too), with `changes`."""
    from seal.infra.config import to_dataclass

    raw = yaml.safe_load((REPO / "seal" / "configs" / group / "default.yaml").read_text())
    return to_dataclass(cls, {**raw, **changes}, group)


def random_model(spec: dict, device: str, dtype: torch.dtype, tok=None, seed: int = 0):
    """A randomly initialised model from an architecture's config (`ARCHS`), built on `device` in
    `dtype`; with `tok`, its special token ids are the tokenizer's."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(spec)
    if tok is not None:
        spec |= dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    mcfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    torch.manual_seed(seed)
    with torch.device(device):  # initialised where it runs: a 7B model's init on the CPU takes minutes
        model = AutoModelForCausalLM.from_config(mcfg, dtype=dtype)
    return model.eval()


def build(args):
    device = args.device
    if args.arch:
        from seal.models.tiny import tiny_tokenizer

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = random_model(ARCHS[args.arch], device, dtype)
        tok = tiny_tokenizer(vocab_size=4096)  # random weights: any tokenizer does for timing
        model_cfg = ModelConfig(name="tiny-random", dtype="bfloat16" if device == "cuda" else "float32")
        return model, tok, model_cfg
    model_cfg = ModelConfig(name=args.model, device=device)
    model, tok = load_model(model_cfg)
    return model, tok, model_cfg


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--arch", choices=sorted(ARCHS), help="randomly initialised model of this architecture")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--passages", type=int, default=4)
    ap.add_argument("--edits", type=int, default=2, help="self-edits per passage")
    ap.add_argument("--plain-sample", type=int, default=0, help="inner loops for (b); 0: all")
    ap.add_argument("--ref-sample", type=int, default=1, help="inner loops for (c)")
    ap.add_argument("--ref-steps", type=int, default=None, help="training steps timed per (c) loop (default: "
                                                                "3 on CPU, all on GPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-loops", type=int, default=2, help="inner loops in the profiled chunk")
    ap.add_argument("--backend", choices=["hf", "vllm", "peft"], default="hf",
                    help="also run (a) with this generation backend and report it beside backend=hf")
    ap.add_argument("--out", type=Path, default=None)
    return ap


def main():
    args = parser().parse_args()
    torch.manual_seed(args.seed)
    if args.ref_steps is None and args.device == "cpu":
        args.ref_steps = 3
    model, tok, model_cfg = build(args)
    result, table, prof_table = run(args, model, tok, model_cfg)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2))
        (args.out / "table.md").write_text(table + "\n")
        if prof_table:
            (args.out / "profile.txt").write_text(prof_table)
    print(f"speedup_vs_plain={result['speedup_vs_plain']:.2f} speedup_vs_reference={result['speedup_vs_reference']:.2f} "
          f"train_peak_fraction={result['train_peak_fraction']:.2f}")


def run(args, model, tok, model_cfg, curves: dict | None = None):
    """The three pipelines on `model` as `args` (`parser()`) set them: (result, markdown table, profile
    table or None). With `curves` (a dict), {"seal": {seed: losses}, "plain": {seed: losses}} are filled in,
    and (b) then logs its loss every step, as (a) records it."""
    record, curves = curves is not None, {} if curves is None else curves
    chat = uses_chat(model_cfg, tok)
    cfg = section(InnerLoopConfig, "inner_loop")
    qa = section(QAEvalConfig, "qa_eval", max_new_tokens=32)
    se = section(SelfEditConfig, "self_edit", max_new_tokens=128, batch_size=16)
    passages = generate_passages(args.passages, seed=args.seed + 1000)

    # the self-edits every pipeline trains on: sampled once, outside the timings
    task = KnowledgeTask(model, tok, model_cfg, cfg, qa, GraderConfig(kind="match"), se)
    texts = task.sample(passages, "implications", args.edits, seed=args.seed, desc="sampling self-edits")
    items = [(p, t, "implications", 1000 + 10 * i + j) for i, (p, ts) in enumerate(zip(passages, texts))
             for j, t in enumerate(ts)]
    docs = [task.documents(p, t, f) for p, t, f, _ in items]
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    lora = task.inner.lora.params_per_slot()
    dtype = next(model.parameters()).dtype
    peak = matmul_peak(model, args.device, dtype)
    print(f"model {args.arch or args.model} on {args.device} ({dtype}); {len(items)} inner loops, K={task.adapters_per_batch};"
          f" matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)

    with PeakMemory(args.device) as mem_a:
        a = seal_pipeline(task, items, passages, args.device, curves.setdefault("seal", {}) if record else None)
    a["peak_memory_gb"] = mem_a.gb
    print(f"(a) seal: {a['seconds']:.1f} s", flush=True)
    task.inner.lora.remove()  # (b) and (c) use PEFT on the plain model

    a_backend = None
    if args.backend != "hf":  # the same pipeline, generation in an engine worker (vLLM on a GPU)
        with tempfile.TemporaryDirectory() as tmp:
            folder = model_folder(model_cfg)
            if folder is None:  # a randomly initialised model: the worker loads it from a folder
                model.save_pretrained(tmp, safe_serialization=True)
                tok.save_pretrained(tmp)
                folder = tmp
            task_b = KnowledgeTask(model, tok, replace(model_cfg, name=folder), cfg, qa, GraderConfig(kind="match"),
                                   se, backend=BackendConfig(name=args.backend))
            try:
                with PeakMemory(args.device) as mem_ab:
                    a_backend = seal_pipeline(task_b, items, passages, args.device)
            finally:
                task_b.close()
                task_b.inner.lora.remove()
            a_backend["peak_memory_gb"] = mem_ab.gb
        print(f"(a) seal, backend={args.backend}: {a_backend['seconds']:.1f} s", flush=True)
    sample_b = items[: args.plain_sample or len(items)]
    with PeakMemory(args.device) as mem_b:
        b, model = plain_pipeline(model, tok, cfg, sample_b, docs[: len(sample_b)], qa, chat, args.device,
                                  model_cfg.dtype, curves.setdefault("plain", {}) if record else None)
    b["peak_memory_gb"] = mem_b.gb
    print(f"(b) plain: {b['seconds']:.1f} s for {len(sample_b)}", flush=True)
    with PeakMemory(args.device) as mem_c:
        c, model = reference_pipeline(model, tok, cfg, items[: args.ref_sample], docs[: args.ref_sample], qa, chat,
                                      args.device, args.ref_steps)
    c["peak_memory_gb"] = mem_c.gb

    prof_table = None
    if args.profile:  # last, on its own: a profile of a long chunk holds GBs of events until freed
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
        model.gradient_checkpointing_disable()
        task = KnowledgeTask(model, tok, model_cfg, cfg, qa, GraderConfig(kind="match"), se)
        with profile(activities=acts) as prof:
            task.adapt_and_evaluate_many(items[: min(len(items), task.adapters_per_batch, args.profile_loops)])
        prof_table = prof.key_averages().table(sort_by="self_cuda_time_total" if args.device == "cuda"
                                               else "self_cpu_time_total", row_limit=25)
        del prof
        gc.collect()

    per_hour = {"seal": 3600 * len(items) / a["seconds"], "plain": 3600 * len(sample_b) / b["seconds"],
                "reference": 3600 / c["seconds_per_loop"]}
    if a_backend:
        per_hour[f"seal_{args.backend}"] = 3600 * len(items) / a_backend["seconds"]
    fa = train_flops(a["train_tokens"], linear, lora) / a["train_seconds"]
    fb = train_flops(b["train_tokens"], linear, lora) / b["train_seconds"]

    def acc(x):
        v = x["accuracies"]
        if not v:
            return "n/a", None
        m = statistics.fmean(v)
        se_ = statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0
        return f"{m:.3f} ± {se_:.3f} (n={len(v)})", m

    rows = [("(a) seal", per_hour["seal"], fa / peak, a["peak_memory_gb"], acc(a)[0], f"{a['pad_fraction']:.3f}"),
            *([(f"(a) seal, backend={args.backend}", per_hour[f"seal_{args.backend}"],
                train_flops(a_backend["train_tokens"], linear, lora) / a_backend["train_seconds"] / peak,
                a_backend["peak_memory_gb"], acc(a_backend)[0], f"{a_backend['pad_fraction']:.3f}")]
              if a_backend else []),
            ("(b) plain PEFT + TRL", per_hour["plain"], fb / peak, b["peak_memory_gb"], acc(b)[0], "dynamic"),
            ("(c) reference-faithful", per_hour["reference"], None, c["peak_memory_gb"],
             acc(c)[0] if not c["extrapolated"] else f"not measured ({args.ref_steps} steps timed, extrapolated)",
             "to 2048")]
    lines = ["| pipeline | inner loops / hour | train FLOP/s / peak | peak memory GB | accuracy | padding |",
             "|---|---|---|---|---|---|"]
    for name, ph, frac, mem, ac, pad in rows:
        lines.append(f"| {name} | {ph:.1f} | {'' if frac is None else f'{frac:.2f}'} | {mem:.2f} | {ac} | {pad} |")
    table = "\n".join(lines)
    print(table)
    speed_plain = per_hour["seal"] / per_hour["plain"]
    speed_ref = per_hour["seal"] / per_hour["reference"]
    result = {"model": args.arch or args.model, "device": args.device, "dtype": str(dtype), "inner_loops": len(items),
              "adapters_per_batch": task.adapters_per_batch, "matmul_peak_flops": peak, "seal": a, "plain": b,
              "reference": c, "per_hour": per_hour, **({f"seal_{args.backend}": a_backend} if a_backend else {}), "speedup_vs_plain": speed_plain, "speedup_vs_reference": speed_ref,
              "train_peak_fraction": fa / peak, "plain_train_peak_fraction": fb / peak,
              "seal_train_seconds_share": a["train_seconds"] / a["seconds"],
              "plain_train_seconds_share": b["train_seconds"] / b["seconds"],
              "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    if a_backend:
        result[f"{args.backend}_vs_hf"] = per_hour[f"seal_{args.backend}"] / per_hour["seal"]
        print(f"seal backend={args.backend} vs backend=hf: {result[f'{args.backend}_vs_hf']:.2f}x inner loops per hour")
    print(f"training share of wall time: seal {result['seal_train_seconds_share']:.2f}, "
          f"plain {result['plain_train_seconds_share']:.2f}")
    return result, table, prof_table


if __name__ == "__main__":
    main()
