"""Inner loops per hour on a Ray pool: 2 workers vs 1 on this machine, side by side in one run.

    python scripts/bench_ray.py --out experiments/bench_ray_cpu            # SmolLM2, 8 inner loops, CPU
    python scripts/bench_ray.py --model tiny-random --loops 16             # a quick check of the plumbing

Why: `runtime=ray` (seal/infra/runtime.py) should turn more workers into more inner loops per hour. The
same chunks of inner loops (fictional passages, the `passage` condition, fixed seeds; chunks of K
as the outer loop cuts them) run on (a) one worker that has every CPU (`--cpus` threads) and
(b) two workers with half the CPUs each. Each pool first opens the model on every worker (not
timed: a worker does that once per round); then the timed part is dispatch to the last result.
Both pools must return the same per-loop accuracies, which the script checks. It prints inner
loops per hour for each and the ratio, and writes `results.json` and `README.md` to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def config(model: str, loops: int, k: int):
    from hydra import compose, initialize_config_dir

    from seal.cli import recipe_config  # importing seal.cli also registers the run-dir resolver
    from seal.infra.config import plain

    with initialize_config_dir(config_dir=str(REPO / "seal" / "configs"), version_base=None):
        raw = plain(compose(config_name="config", overrides=[
            "experiment=ki_demo", f"model={'tiny-random' if model == 'tiny-random' else 'smollm2-135m'}",
            f"data.num_passages={loops}", f"inner_loop.adapters_per_batch={k}", "wandb.mode=disabled"]))
    return recipe_config(raw)[0]


def timed_pool(cfg, domain, chunks, workers: int, cpus: float) -> dict:
    import ray

    from seal.infra.runtime import RayRunner, RuntimeConfig

    ray.init(num_cpus=int(workers * cpus), include_dashboard=False, log_to_driver=False)
    try:
        runner = RayRunner(RuntimeConfig(name="ray", workers=workers, cpus_per_worker=cpus), domain)
        policy = cfg.model.name
        t0 = time.perf_counter()
        ray.get([w.adapt_many.remote(policy, 0, []) for w in runner.workers])  # each worker loads the model
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        outs = dict(runner.map(None, policy, 0, chunks))
        seconds = time.perf_counter() - t0
        runner.close()
    finally:
        ray.shutdown()
    flat = [o for i in range(len(chunks)) for o in outs[i]]
    n = len(flat)
    return {"workers": workers, "cpus_per_worker": cpus, "inner_loops": n, "seconds": round(seconds, 1),
            "startup_seconds": round(startup, 1), "loops_per_hour": round(n / seconds * 3600, 1),
            "accuracies": [o.get("accuracy") for o in flat]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default) or tiny-random")
    ap.add_argument("--loops", type=int, default=8, help="inner loops per pool")
    ap.add_argument("--k", type=int, default=2, help="inner loops per chunk (the outer loop's K)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of this machine to use")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from seal.data.sources import load_passages
    from seal.infra.chunking import chunks as cut
    from seal.infra.config import derive_seed
    from seal.recipes.restem import domain as knowledge_domain

    cfg = config(args.model, args.loops, args.k)
    passages = load_passages(cfg.data)[:args.loops]
    items = [("passage", p, "", derive_seed(0, "bench_ray", i)) for i, p in enumerate(passages)]
    chunks = cut(items, args.k)
    domain = knowledge_domain(cfg)
    one = timed_pool(cfg, domain, chunks, workers=1, cpus=args.cpus)
    two = timed_pool(cfg, domain, chunks, workers=2, cpus=args.cpus / 2)
    same = one["accuracies"] == two["accuracies"]
    ratio = two["loops_per_hour"] / one["loops_per_hour"]
    print(f"{'pool':<28}{'inner loops':>12}{'seconds':>10}{'loops/hour':>12}{'start-up s':>12}")
    for name, r in (("1 worker x %d CPUs" % args.cpus, one), ("2 workers x %g CPUs" % (args.cpus / 2), two)):
        print(f"{name:<28}{r['inner_loops']:>12}{r['seconds']:>10}{r['loops_per_hour']:>12}{r['startup_seconds']:>12}")
    print(f"same accuracies in both pools: {same}")
    print(f"ratio_2_vs_1={ratio:.2f}")
    if not same:
        sys.exit("the two pools disagree on the inner loops' accuracies")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        res = {"model": args.model, "k": args.k, "cpus": args.cpus, "one_worker": one, "two_workers": two,
               "ratio_2_vs_1": round(ratio, 3), "same_accuracies": same}
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        (args.out / "README.md").write_text("\n".join([
            "# runtime=ray: 2 workers vs 1 on this machine", "",
            f"    python scripts/bench_ray.py --model {args.model} --loops {args.loops} --k {args.k} "
            f"--cpus {args.cpus} --out {args.out}", "",
            f"{one['inner_loops']} inner loops (ki_demo inner-loop settings, `passage` condition, fixed seeds), chunks "
            f"of K={args.k}, on a local Ray. Start-up (each worker loading the model) is not in the timed part.", "",
            "| pool | seconds | inner loops per hour | start-up seconds |", "|---|---|---|---|",
            f"| 1 worker, {args.cpus} CPUs (torch threads) | {one['seconds']} | {one['loops_per_hour']} | "
            f"{one['startup_seconds']} |",
            f"| 2 workers, {args.cpus / 2:g} CPU each | {two['seconds']} | {two['loops_per_hour']} | "
            f"{two['startup_seconds']} |", "",
            f"Ratio 2 vs 1: **{ratio:.2f}x**. Both pools returned the same per-loop accuracies: {same}.", ""]))


if __name__ == "__main__":
    main()
