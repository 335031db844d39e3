"""The likelihood and self_questions rewards against the accuracy reward, on the same inner loops: how
well each ranks self-edits as accuracy does (Spearman rank correlation of the gains over the unadapted
model), and what each costs per inner loop (the likelihood needs no generation; self_questions needs no
gold questions, but the policy first writes its own, once per passage). Side by side in one run.

    python scripts/bench_rewards.py                                  # SmolLM2, 12 fictional passages x 3 self-edits
    python scripts/bench_rewards.py --passages 24 --k 3 --out experiments/bench_rewards_cpu
    python scripts/bench_rewards.py --model tiny-random --passages 2 --k 2   # seconds: checks the script
    python scripts/bench_rewards.py --from-json experiments/bench_rewards_cpu/results.json  # re-analyse, no training

Every inner loop trains once (`KnowledgeTask.adapt_and_evaluate_many(measure=("accuracy", "likelihood",
"self_questions"))`); accuracy is greedy answers to the gold questions graded by the match grader,
likelihood the gold answers' mean log-probability per token, self_questions greedy answers to the
questions the unadapted model wrote about the passage (`seal.eval.self_questions`, the restem config's
defaults), graded against its own answers. Writing them is timed apart, per passage, and its share per
inner loop (over the passage's k self-edits) is added to the self_questions cost. Passages it wrote no
parseable pair about are left out of the self_questions statistics (counted). With `--out`, results.json
(every inner loop's row: passage, sample, each measure's adapted and unadapted value and gain, why it is
unusable) and results.md.

New columns (`seal.eval.reward_agreement`; 95 % intervals from 2,000 bootstrap resamples of passages, a
passage drawn with all its edits; "within noise" when the interval spans 0, or chance for top-1, or with
fewer than 10 passages): pooled Spearman of all gains; within-passage Spearman of the k edits (what
ReST-EM's ranking within a context sees; passages where either side is constant are excluded, counted);
top-1, the share of passages where the reward's best edit is one of accuracy's best, beside chance (a
uniformly random pick); keep/drop, how often the reward and accuracy make the same `improves_baseline`
decision (keep: gain > 0), and Cohen's kappa of those decisions.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seal.eval.reward_agreement import (  # noqa: E402
    ACCURACY,
    format_estimate,
    format_verdict,
    reward_agreement,
    spearman,
)

MEASURES = ("accuracy", "likelihood", "self_questions")
BOOTSTRAP_SEED = 20250101  # fixed: the intervals of a run and of its --from-json re-analysis are the same
N_BOOT = 2000
LEVEL = 0.95


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--passages", type=int, default=12)
    ap.add_argument("--k", type=int, default=3, help="self-edits per passage")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-questions", type=int, default=None, help="self-written pairs kept per passage "
                    "(default: the restem config's self_questions.max_questions)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                    help="recompute the statistics from an existing results.json (its rows) instead of training; "
                         "results.md is written beside it, or results.json and results.md into --out")
    return ap.parse_args()


# ---- the run: one row per inner loop -------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict:
    """Train and measure every inner loop; the run's settings, timings and rows (no statistics)."""
    from dataclasses import replace

    from hydra import compose, initialize_config_dir

    from seal.cli import recipe_config, resolved
    from seal.data.fictional import generate_passages
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.self_questions import NO_PAIRS, SelfQuestionsConfig, examined
    from seal.infra.config import derive_seed
    from seal.infra.hydra_config import CONFIG_DIR
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
    samples = [i for ts in texts for i in range(len(ts))]
    start = time.perf_counter()
    outs = []
    for c in range(0, len(items), task.adapters_per_batch):
        chunk = items[c:c + task.adapters_per_batch]
        outs += task.adapt_and_evaluate_many(chunk, measure=MEASURES,
                                             self_questions=[written[p.uid]["questions"] for p, *_ in chunk])
    wall = time.perf_counter() - start
    no_base = {"self_questions": NO_PAIRS}
    return {"model": args.model, "passages": args.passages, "k": args.k, "epochs": args.epochs, "seed": args.seed,
            "measures": list(MEASURES),
            "self_questions": {"passages_with_questions": len(asked),
                               "questions_per_passage": statistics.fmean(
                                   len(w["questions"]) for w in written.values()),
                               "writing_seconds_per_passage": write_s, "max_questions": sq_cfg.max_questions},
            "wall_seconds": wall,
            "rows": [row(p, sample, seed, o, base, no_base)
                     for (p, _, _, seed), sample, o in zip(items, samples, outs)]}


def row(p, sample: int, seed: int, o: dict, base: dict, no_base: dict) -> dict:
    """One inner loop: for each measure the adapted value, the unadapted one and the gain, or why it is
    unusable (the whole loop: the self-edit was skipped; one measure: no unadapted value, e.g. no exam)."""
    skipped = o.get("skipped", "no accuracy recorded") if ACCURACY not in o else None
    out = {"passage": p.uid, "sample": sample, "seed": seed, "unusable": skipped,
           "train_seconds": None if skipped else o["train"]["seconds"] / o["train"]["adapters"],
           "measure_seconds": None if skipped else o["measure_seconds"]}
    for m in MEASURES:
        b = base[m].get(p.uid)
        adapted = None if skipped else o[m]
        why = skipped or (no_base.get(m, "no unadapted value") if b is None else None)
        out[m] = {"adapted": adapted, "base": b, "gain": None if why else adapted - b, "unusable": why}
    return out


# ---- statistics, from the rows alone -------------------------------------------------------------------

def load_rows(path: Path) -> dict:
    """A results.json written with rows, or a clear exit naming the file and what it lacks."""
    if not path.is_file():
        raise SystemExit(f"--from-json: {path}: no such file")
    res = json.loads(path.read_text())
    if "rows" not in res:
        raise SystemExit(f"--from-json: {path} has no 'rows' field (one row per inner loop): it was written before "
                         f"bench_rewards.py kept them, so it cannot be re-analysed; rerun the benchmark")
    for field in ("passage", "sample", "unusable", "train_seconds", "measure_seconds", *res.get("measures", MEASURES)):
        if res["rows"] and field not in res["rows"][0]:
            raise SystemExit(f"--from-json: {path}: its rows have no '{field}' field")
    return res


def fmean_or_nan(xs) -> float:
    xs = list(xs)
    return statistics.fmean(xs) if xs else float("nan")


def analyse(res: dict) -> dict:
    """The run's settings and rows with every statistic recomputed from the rows."""
    rows, measures = res["rows"], res.get("measures", list(MEASURES))
    rewards = [m for m in measures if m != ACCURACY]
    usable = [r for r in rows if r["unusable"] is None]
    train_s = fmean_or_nan(r["train_seconds"] for r in usable)
    eval_s = {m: fmean_or_nan(r["measure_seconds"][m] for r in usable) for m in measures}
    write_s = res["self_questions"]["writing_seconds_per_passage"]
    cost = {m: eval_s[m] + (write_s / res["k"] if m == "self_questions" else 0.0) for m in measures}
    both = {m: [r for r in rows if r[ACCURACY]["unusable"] is None and r[m]["unusable"] is None] for m in rewards}
    agreement = {m: reward_agreement(rows, m, BOOTSTRAP_SEED, N_BOOT, LEVEL) for m in rewards}
    return res | {
        "inner_loops": len(usable), "skipped": len(rows) - len(usable),
        "inner_loops_per_measure": {m: sum(r[m]["unusable"] is None for r in rows) for m in measures},
        "bootstrap": {"unit": "passage", "seed": BOOTSTRAP_SEED, "n_boot": N_BOOT, "level": LEVEL},
        "agreement": agreement,
        "spearman_score": {m: spearman([r[ACCURACY]["adapted"] for r in both[m]], [r[m]["adapted"] for r in both[m]])
                           for m in rewards},
        "seconds_per_loop": {"train": train_s, **{f"{m}_eval": eval_s[m] for m in measures},
                             "self_questions_writing": write_s / res["k"],
                             "self_questions_total": cost.get("self_questions", float("nan"))},
        "measure_seconds_per_loop": cost,
        "eval_speedup": {m: cost[ACCURACY] / cost[m] for m in rewards},
        "loop_speedup": {m: (train_s + cost[ACCURACY]) / (train_s + cost[m]) for m in rewards}}


# ---- report --------------------------------------------------------------------------------------------

def agreement_table(res: dict) -> str:
    from seal.infra.report import md_table

    headers = ["reward", "inner loops (passages)", "Spearman of gains, pooled [95% CI]", "pooled: verdict",
               "within-passage Spearman [95% CI]", "within: verdict", "top-1 agreement [95% CI]", "chance",
               "top-1 vs chance", "keep/drop agreement [95% CI]", "keep/drop kappa [95% CI]", "kappa: verdict"]
    rows = []
    for m, a in res["agreement"].items():
        t1, kd = a["top1"], a["keep_drop"]
        rows.append([m, f"{a['inner_loops']} ({a['passages']})", format_estimate(a["pooled_spearman"]),
                     format_verdict(a["pooled_spearman"]), format_estimate(a["within_passage_spearman"]),
                     format_verdict(a["within_passage_spearman"]), format_estimate(t1["agreement"]),
                     "—" if math.isnan(t1["chance"]) else f"{t1['chance']:.3f}",
                     format_verdict(t1["excess_over_chance"]), format_estimate(kd["agreement"]),
                     format_estimate(kd["kappa"]), format_verdict(kd["kappa"])])
    return md_table(headers, rows)


def exclusions(res: dict) -> str:
    """Which passages each within-passage statistic could not use, in words."""
    lines = []
    for m, a in res["agreement"].items():
        w, kd = a["within_passage_spearman"], a["keep_drop"]
        lines.append(f"- {m}: within-passage Spearman over {w['n_passages']} of {a['passages']} passages "
                     f"({w['excluded_constant']} with constant accuracy or reward, {w['excluded_too_few']} with fewer "
                     f"than 2 usable edits; {a['passages_without_usable_loop']} passages had none); keep/drop: "
                     f"{kd['kept_by_reward']} of {kd['edits']} edits kept by {m}, {kd['kept_by_accuracy']} by accuracy")
    return "\n".join(lines)


def cost_table(res: dict) -> str:
    from seal.infra.report import md_table

    s, cost, k = res["seconds_per_loop"], res["measure_seconds_per_loop"], res["k"]
    headers = ["reward", "inner loops", "measure s/loop", "of which writing", "train+measure s/loop",
               "measure speed-up", "loop speed-up"]
    return md_table(headers, [
        [m, res["inner_loops_per_measure"][m], cost[m],
         res["self_questions"]["writing_seconds_per_passage"] / k if m == "self_questions" else 0.0,
         s["train"] + cost[m], res["eval_speedup"].get(m, 1.0), res["loop_speedup"].get(m, 1.0)]
        for m in cost])


def summary(res: dict) -> str:
    sq = res["self_questions"]
    return (f"{res['passages']} passages x {res['k']} self-edits, {res['inner_loops']} inner loops "
            f"({res['skipped']} unusable); train {res['seconds_per_loop']['train']:.2f} s per inner loop. "
            f"self_questions: pairs written about {sq['passages_with_questions']} of {res['passages']} passages "
            f"({sq['questions_per_passage']:.1f} pairs each), {sq['writing_seconds_per_passage']:.2f} s per passage, "
            f"shared by its {res['k']} self-edits.")


def method(res: dict) -> str:
    b = res["bootstrap"]
    return (f"Intervals: {b['level']:.0%} percentile bootstrap over passages ({b['n_boot']} resamples, seed "
            f"{b['seed']}; a passage is drawn with all its edits, which share its questions). A verdict is "
            f"\"within noise\" when the interval spans 0 (top-1: when agreement minus chance spans 0), or with "
            f"fewer than 10 passages. Within-passage statistics are what ReST-EM's selection sees: it ranks "
            f"edits within a context (best_of_k: ties to the earliest sample; improves_baseline: keep gain > 0).")


def report(res: dict) -> str:
    return (f"# Rewards on the same inner loops: {res['model']}\n\n{summary(res)}\n\n"
            f"## Agreement with the accuracy reward\n\n{agreement_table(res)}\n\n{exclusions(res)}\n\n{method(res)}\n\n"
            f"## Cost per inner loop\n\n{cost_table(res)}\n")


def finite(x):
    """`x` with every nan or infinity as None: results.json stays strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def main() -> None:
    args = parse_args()
    res = analyse(load_rows(args.from_json) if args.from_json else run(args))
    md = report(res)
    print(md)
    out = args.out or (args.from_json.parent if args.from_json else None)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        if args.out or not args.from_json:  # --from-json alone leaves the results.json it read as it was
            (out / "results.json").write_text(json.dumps(finite(res), indent=2) + "\n")
        (out / "results.md").write_text(md)


if __name__ == "__main__":
    main()
