"""The likelihood and self_questions rewards against the accuracy reward, on the same inner loops: how
well each ranks self-edits as accuracy does (Spearman rank correlation of the gains over the unadapted
model), and what each costs per inner loop (the likelihood needs no generation; self_questions needs no
gold questions, but the policy first writes its own, once per passage). Side by side in one run.

    python scripts/bench_rewards.py                                  # SmolLM2, 12 fictional passages x 3 self-edits
    python scripts/bench_rewards.py --passages 24 --k 3 --out experiments/bench_rewards_cpu
    python scripts/bench_rewards.py --model tiny-random --passages 2 --k 2   # seconds: checks the script

Every inner loop trains once (`KnowledgeTask.adapt_and_evaluate_many(measure=("accuracy", "likelihood",
"self_questions"))`); accuracy is greedy answers to the gold questions graded by the match grader,
likelihood the gold answers' mean log-probability per token, self_questions greedy answers to the
questions the unadapted model wrote about the passage (`seal.eval.self_questions`, the restem config's
defaults), graded against its own answers. Writing them is timed apart, per passage, and its share per
inner loop (over the passage's k self-edits) is added to the self_questions cost. Passages it wrote no
parseable pair about are left out of the self_questions correlation (counted). With `--out`, results.json
and results.md.
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


MEASURES = ("accuracy", "likelihood", "self_questions")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--passages", type=int, default=12)
    ap.add_argument("--k", type=int, default=3, help="self-edits per passage")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-questions", type=int, default=None, help="self-written pairs kept per passage "
                    "(default: the restem config's self_questions.max_questions)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from dataclasses import replace

    from hydra import compose, initialize_config_dir

    from seal.cli import recipe_config, resolved
    from seal.data.fictional import generate_passages
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.self_questions import SelfQuestionsConfig, examined
    from seal.infra.config import derive_seed
    from seal.infra.hydra_config import CONFIG_DIR
    from seal.infra.report import md_table
    from seal.models.loading import load_model

    # the ki_eval experiment's sections (the shipped self-edit prompts, inner loop, QA), match grader
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        composed = compose(config_name="config", overrides=[
            "experiment=ki_eval", f"model={args.model}", "grader=match", f"self_edit.k={args.k}",
            f"inner_loop.epochs={args.epochs}", "qa_eval.max_new_tokens=32", "self_edit.max_new_tokens=128"])
    cfg, _ = recipe_config(resolved(composed))
    sq_cfg = SelfQuestionsConfig()
    if args.max_questions is not None:
        sq_cfg = replace(sq_cfg, max_questions=args.max_questions)
    model, tok = load_model(cfg.model)
    task = KnowledgeTask(model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit)
    passages = generate_passages(args.passages, seed=args.seed)
    base = {m: {} for m in MEASURES}
    base["accuracy"] = {p.uid: acc for p, (acc, _) in zip(passages, task.base_accuracies(passages))}
    base["likelihood"] = {p.uid: lp for p, (lp, _) in zip(passages, task.base_likelihoods(passages))}
    # the self_questions exam: written once per passage by the unadapted model (one call each, timed)
    start = time.perf_counter()
    written = dict(zip([p.uid for p in passages], task.write_self_questions(
        passages, sq_cfg, [derive_seed(args.seed, "self_questions", p.uid) for p in passages])))
    write_s = (time.perf_counter() - start) / len(passages)
    asked = [p for p in passages if written[p.uid]["questions"]]
    base["self_questions"] = {p.uid: acc for p, (acc, _) in zip(asked, task.base_accuracies(
        [examined(p, written[p.uid]["questions"]) for p in asked]))}
    texts = task.sample(passages, "implications", args.k, derive_seed(args.seed, "bench_rewards"))
    items = [(p, t, "implications", derive_seed(args.seed, "inner", p.uid, i))
             for p, ts in zip(passages, texts) for i, t in enumerate(ts)]
    start = time.perf_counter()
    outs = []
    for c in range(0, len(items), task.adapters_per_batch):
        chunk = items[c:c + task.adapters_per_batch]
        outs += task.adapt_and_evaluate_many(chunk, measure=MEASURES,
                                             self_questions=[written[p.uid]["questions"] for p, *_ in chunk])
    wall = time.perf_counter() - start
    used = [(p, o) for (p, *_), o in zip(items, outs) if "accuracy" in o]
    by = {m: [(p, o) for p, o in used if p.uid in base[m]] for m in MEASURES}
    gains = {m: [o[m] - base[m][p.uid] for p, o in by[m]] for m in MEASURES}
    acc_gain_of = {m: [o["accuracy"] - base["accuracy"][p.uid] for p, o in by[m]] for m in MEASURES}
    train_s = statistics.fmean(o["train"]["seconds"] / o["train"]["adapters"] for _, o in used)
    eval_s = {m: statistics.fmean(o["measure_seconds"][m] for _, o in used) for m in MEASURES}
    cost = {m: eval_s[m] + (write_s / args.k if m == "self_questions" else 0.0) for m in MEASURES}
    res = {"model": args.model, "passages": args.passages, "k": args.k, "inner_loops": len(used),
           "skipped": len(outs) - len(used),
           "self_questions": {"passages_with_questions": len(asked), "inner_loops": len(by["self_questions"]),
                              "questions_per_passage": statistics.fmean(
                                  len(w["questions"]) for w in written.values()),
                              "writing_seconds_per_passage": write_s,
                              "max_questions": sq_cfg.max_questions},
           "spearman_gain": {m: spearman(acc_gain_of[m], gains[m]) for m in MEASURES[1:]},
           "spearman_score": {m: spearman([o["accuracy"] for _, o in by[m]], [o[m] for _, o in by[m]])
                              for m in MEASURES[1:]},
           "seconds_per_loop": {"train": train_s, **{f"{m}_eval": eval_s[m] for m in MEASURES},
                                "self_questions_writing": write_s / args.k,
                                "self_questions_total": cost["self_questions"]},
           "eval_speedup": {m: cost["accuracy"] / cost[m] for m in MEASURES[1:]},
           "loop_speedup": {m: (train_s + cost["accuracy"]) / (train_s + cost[m]) for m in MEASURES[1:]},
           "wall_seconds": wall}
    headers = ["reward", "inner loops", "Spearman of gains with accuracy's", "of scores",
               "measure s/loop", "of which writing", "train+measure s/loop", "measure speed-up", "loop speed-up"]
    rows = [[m, len(by[m]), res["spearman_gain"].get(m, "—"), res["spearman_score"].get(m, "—"), cost[m],
             write_s / args.k if m == "self_questions" else 0.0, train_s + cost[m],
             res["eval_speedup"].get(m, 1.0), res["loop_speedup"].get(m, 1.0)] for m in MEASURES]
    table = md_table(headers, rows)
    print(f"{len(used)} inner loops ({res['skipped']} unusable), {args.passages} passages x {args.k} self-edits; "
          f"the model wrote questions about {len(asked)} of {args.passages} passages "
          f"({res['self_questions']['questions_per_passage']:.1f} pairs each, {write_s:.2f} s per passage)")
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        (args.out / "results.md").write_text(
            f"# Rewards on the same inner loops: {args.model}\n\n{args.passages} passages x {args.k} self-edits, "
            f"{len(used)} inner loops ({res['skipped']} unusable); train {train_s:.2f} s per inner loop. "
            f"self_questions: pairs written about {len(asked)} of {args.passages} passages, "
            f"{write_s:.2f} s per passage, shared by its {args.k} self-edits.\n\n{table}\n")


if __name__ == "__main__":
    main()
