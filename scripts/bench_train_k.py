"""Training throughput of the batched inner loop against K, side by side in one run: the same jobs
(8 self-edit-like document sets on SmolLM2) trained K at a time, for each K and token budget given.
Prints tokens/s, the ratio to the first setting, system time and minor page faults, to show what
batching adapters buys (or costs) on this machine; `--profile` adds the top ops for each setting.

    python scripts/bench_train_k.py                      # K=1 vs K=8 (token budget 4096)
    python scripts/bench_train_k.py --settings 1:4096 8:4096 8:1024 --profile
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seal.data.fictional import generate_passages
from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, TrainJob
from seal.models.loading import ModelConfig, load_model


def make_jobs(n: int, seed: int) -> list[TrainJob]:
    """Like an implications self-edit: 5-11 short title-prefixed lines plus the passage itself."""
    rng = random.Random(seed)
    jobs = []
    for i, p in enumerate(generate_passages(n, seed=seed + 3)):
        sents = [s.strip() for s in p.context.split(".") if s.strip()]
        lines = [f"{p.title}\n{rng.choice(sents)}, which means {rng.choice(sents).lower()}."
                 for _ in range(rng.randint(5, 11))]
        jobs.append(TrainJob(lines + [f"{p.title}\n{p.context}"], seed=i))
    return jobs


def run(model, tok, jobs, k: int, budget: int, epochs: int, profile: bool) -> dict:
    defaults = yaml.safe_load((REPO / "seal/configs/inner_loop/default.yaml").read_text())  # batch 4, lr 2e-3, r 32
    inner = InnerLoop(model, tok, InnerLoopConfig(**{**defaults, "epochs": epochs, "adapters_per_batch": k,
                                                     "token_budget": budget}))
    r0, t0, tokens = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
    prof = None
    if profile:
        from torch.profiler import ProfilerActivity

        prof = torch.profiler.profile(activities=[ProfilerActivity.CPU])
        prof.__enter__()
    for c in range(0, len(jobs), k):
        tokens += sum(s.tokens for s in inner.train_many(jobs[c:c + k]))
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    table = None
    if prof is not None:
        prof.__exit__(None, None, None)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    inner.lora.remove()
    return {"k": k, "budget": budget, "tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds,
            "pad": inner.pad_fraction, "sys_s": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt,
            "profile": table}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["1:4096", "8:4096"], help="K:token_budget pairs")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="profiling slows the runs: ratios only")
    args = ap.parse_args()
    model, tok = load_model(ModelConfig(name="smollm2-135m"))
    jobs = make_jobs(args.jobs, args.seed)
    # untimed warm-up at the largest K: the first run otherwise pays for growing the heap (page faults)
    warm = max(int(x.split(":")[0]) for x in args.settings)
    run(model, tok, jobs[:warm], warm, 4096, 1, False)
    rows = [run(model, tok, jobs, *map(int, s.split(":")), args.epochs, args.profile) for s in args.settings]
    print("| K | token budget | tokens/s | vs first | pad | sys s | minor faults |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['k']} | {r['budget']} | {r['tok_s']:.1f} | {r['tok_s'] / rows[0]['tok_s']:.2f} | {r['pad']:.3f} "
              f"| {r['sys_s']:.1f} | {r['minflt']} |")
    for r in rows:
        if r["profile"]:
            print(f"\nK={r['k']} budget={r['budget']}\n{r['profile']}")


if __name__ == "__main__":
    main()
