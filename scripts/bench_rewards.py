"""The likelihood reward against the accuracy reward, on the same inner loops: how well it ranks
self-edits as accuracy does (Spearman rank correlation of the gains over the unadapted model), and
what each costs per inner loop (the likelihood needs no generation). Side by side in one run.

    python scripts/bench_rewards.py                                  # SmolLM2, 12 fictional passages x 3 self-edits
    python scripts/bench_rewards.py --passages 24 --k 3 --out experiments/bench_rewards_cpu
    python scripts/bench_rewards.py --model tiny-random --passages 2 --k 2   # seconds: checks the script

Every inner loop trains once (`KnowledgeTask.adapt_and_evaluate_many(measure="both")`); accuracy is
greedy answers graded by the match grader, likelihood the gold answers' mean log-probability per token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ranks(xs: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for m in range(i, j + 1):
            out[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    if len(set(ra)) < 2 or len(set(rb)) < 2:
        return float("nan")
    return statistics.correlation(ra, rb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--passages", type=int, default=12)
    ap.add_argument("--k", type=int, default=3, help="self-edits per passage")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir

    from seal.cli import recipe_config, resolved
    from seal.data.fictional import generate_passages
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.infra.config import derive_seed
    from seal.infra.hydra_config import CONFIG_DIR
    from seal.models.loading import load_model

    # the ki_eval experiment's sections (the shipped self-edit prompts, inner loop, QA), match grader
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        composed = compose(config_name="config", overrides=[
            "experiment=ki_eval", f"model={args.model}", "grader=match", f"self_edit.k={args.k}",
            f"inner_loop.epochs={args.epochs}", "qa_eval.max_new_tokens=32", "self_edit.max_new_tokens=128"])
    cfg, _ = recipe_config(resolved(composed))
    model, tok = load_model(cfg.model)
    task = KnowledgeTask(model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit)
    passages = generate_passages(args.passages, seed=args.seed)
    base_acc = {p.uid: acc for p, (acc, _) in zip(passages, task.base_accuracies(passages))}
    base_lp = {p.uid: lp for p, (lp, _) in zip(passages, task.base_likelihoods(passages))}
    texts = task.sample(passages, "implications", args.k, derive_seed(args.seed, "bench_rewards"))
    items = [(p, t, "implications", derive_seed(args.seed, "inner", p.uid, i))
             for p, ts in zip(passages, texts) for i, t in enumerate(ts)]
    start = time.perf_counter()
    outs = []
    for c in range(0, len(items), task.adapters_per_batch):
        outs += task.adapt_and_evaluate_many(items[c:c + task.adapters_per_batch], measure="both")
    wall = time.perf_counter() - start
    used = [(p, o) for (p, *_), o in zip(items, outs) if "accuracy" in o]
    acc_gain = [o["accuracy"] - base_acc[p.uid] for p, o in used]
    lp_gain = [o["likelihood"] - base_lp[p.uid] for p, o in used]
    per_loop = {m: statistics.fmean(o["measure_seconds"][m] for _, o in used) for m in ("accuracy", "likelihood")}
    train_s = statistics.fmean(o["train"]["seconds"] / o["train"]["adapters"] for _, o in used)
    res = {"model": args.model, "passages": args.passages, "k": args.k, "inner_loops": len(used),
           "skipped": len(outs) - len(used), "spearman_gain": spearman(acc_gain, lp_gain),
           "spearman_score": spearman([o["accuracy"] for _, o in used], [o["likelihood"] for _, o in used]),
           "seconds_per_loop": {"train": train_s, "accuracy_eval": per_loop["accuracy"],
                                "likelihood_eval": per_loop["likelihood"]},
           "eval_speedup": per_loop["accuracy"] / per_loop["likelihood"],
           "loop_speedup": (train_s + per_loop["accuracy"]) / (train_s + per_loop["likelihood"]),
           "wall_seconds": wall}
    print(f"{len(used)} inner loops ({res['skipped']} unusable), {args.passages} passages x {args.k} self-edits")
    print(f"Spearman(accuracy gain, likelihood gain) = {res['spearman_gain']:.3f}; of the scores "
          f"{res['spearman_score']:.3f}")
    print(f"seconds per inner loop: train {train_s:.2f}, accuracy eval {per_loop['accuracy']:.3f}, "
          f"likelihood eval {per_loop['likelihood']:.3f}")
    print(f"eval_speedup={res['eval_speedup']:.2f} loop_speedup={res['loop_speedup']:.2f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
