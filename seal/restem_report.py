"""The ReST-EM run's summary (`results.json`) and report (`report.md`, plots), from the records."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from seal.m_step import MStepConfig
from seal.run_dir import RunDir
from seal.selection import SelectionConfig

if TYPE_CHECKING:
    from seal.restem import Domain, OuterLoopConfig


def eval_key(rd: RunDir, r: int, cond: str, uid: str, i: int = 0) -> str:
    """Held-out record key; sample 0 keeps the short form, so one-sample runs read (uid) alone."""
    return rd.key("eval", r, cond, uid, *([i] if i else []))


def eval_summary(domain: Domain, rd: RunDir, r: int, held_out: list, n_samples: int, conditions: list[str]) -> dict:
    """Held-out score of policy r per condition, from its records."""
    from seal.qa_eval import mean_stderr

    summary = {}
    for cond in conditions:
        samples = range(n_samples) if cond == "self_edit" else range(1)
        recs = [(rd.get(eval_key(rd, r, cond, c.uid, i)), c) for c in held_out for i in samples]
        vals = [v for x, c in recs for v in domain.outcomes(x, c)]
        acc, se = mean_stderr(vals)
        summary[cond] = {"accuracy": acc, "stderr": se, "n_questions": len(vals),
                         "passage_mean": statistics.fmean(x.get("accuracy", 0.0) for x, _ in recs),
                         "n_skipped": sum("skipped" in x for x, _ in recs)}
    return summary



def summarise(rd: RunDir, evals: dict) -> dict:
    rounds = []
    for r in sorted(evals):
        entry = {"round": r, "eval": evals[r]}
        sel = rd.get(rd.key("select", r))
        if sel:
            edits = sel["edits"]
            entry["e_step"] = {
                "n_edits": len(edits), "n_kept": sel["n_kept"],
                "mean_score": statistics.fmean(e["score"] for e in edits),
                "mean_gain": statistics.fmean(e["gain"] for e in edits),
                "kept_mean_gain": statistics.fmean(e["gain"] for e in edits if e["kept"]) if sel["n_kept"] else None,
                "kept_not_beating_base": sum(1 for e in edits if e["kept"] and e["gain"] <= 0),
                "mean_words": statistics.fmean(len(e["self_edit"].split()) for e in edits),
                "n_unusable": sum(1 for e in edits if e["skipped"]),
            }
        ms = rd.get(rd.key("m_step", r))
        if ms:
            entry["m_step"] = {k: ms[k] for k in ("steps", "train_loss", "pairs", "processes", "skipped") if k in ms}
        rounds.append(entry)
    results = {"rounds": rounds, "final": rounds[-1]["eval"],
               "conditions": {f"round{e['round']}_{c}": v for e in rounds for c, v in e["eval"].items()}}
    rd.write_json("results.json", results)
    return results


def write_report(domain: Domain, oc: OuterLoopConfig, selection: SelectionConfig, m_cfg: MStepConfig, k: int,
                 seed: int, rd: RunDir, results: dict) -> None:
    from seal.report import line_plot, md_table, print_table

    rounds = results["rounds"]
    conds = ["self_edit", "base", *domain.references]
    rows = []
    for e in rounds:
        ev = e["eval"]
        rows.append([e["round"]] + [f"{ev[c]['accuracy']:.3f} ± {ev[c]['stderr']:.3f}" if c in ev else "—" for c in conds]
                    + [ev["self_edit"]["n_questions"], ev["self_edit"]["n_skipped"]])
    headers = ["policy (round)", *(domain.labels[c] for c in conds), domain.unit, "unusable self-edits"]
    print_table("ReST-EM: held-out score per round", headers, rows)
    xs = [e["round"] for e in rounds]
    series = {domain.labels[c]: ([e["eval"][c]["accuracy"] for e in rounds if c in e["eval"]],
                                 [e["eval"][c]["stderr"] for e in rounds if c in e["eval"]]) for c in conds}
    series = {c: v for c, v in series.items() if v[0]}
    for c in conds[1:]:  # references computed at round 0 only: draw them flat
        lab = domain.labels[c]
        if lab in series and len(series[lab][0]) == 1:
            series[lab] = (series[lab][0] * len(xs), series[lab][1] * len(xs))
    line_plot(rd.path / "accuracy_per_round.png", xs, series, title=f"Held-out score ({domain.unit})",
              xlabel="ReST-EM round (policy)")
    erows = [[e["round"], x["n_edits"], x["n_kept"], x["mean_score"], x["mean_gain"],
              x["kept_mean_gain"] if x["kept_mean_gain"] is not None else "—", x["kept_not_beating_base"],
              x["mean_words"], x["n_unusable"], e.get("m_step", {}).get("train_loss", "—")]
             for e in rounds if (x := e.get("e_step"))]
    _reward_histogram(rd)
    lines = [
        f"# {domain.title}", "",
        domain.describe(),
        (f"{oc.rounds} round(s) x {oc.contexts_per_round} contexts x {k} self-edits x {oc.seeds_per_edit} seeds; "
         f"{oc.eval_samples} self-edit(s) per held-out context; selection `{selection.rule}`; M-step "
         f"{'full FT' if m_cfg.full_finetune else f'LoRA r={m_cfg.lora_r}'} lr {m_cfg.lr}, {m_cfg.epochs} epochs; "
         f"seed {seed}."), "",
        "## Held-out score per round", "", md_table(headers, rows), "",
        "![accuracy per round](accuracy_per_round.png)", "",
        "## E-step and M-step per round", "",
        md_table(["round", "edits", "kept", "mean score", "mean gain", "kept mean gain", "kept but no gain",
                  "mean words", "unusable", "M-step loss"], erows), "",
        "![reward distribution](rewards.png)", "",
        "## Example self-edits", "",
    ]
    for r in range(len(rounds)):
        comp = rd.get(rd.key("eval", r, "completions"))
        if not comp:
            continue
        uid, texts = next(iter(comp["completions"].items()))
        text = texts if isinstance(texts, str) else texts[0]
        rec = rd.get(eval_key(rd, r, "self_edit", uid)) or {}
        score = f"{rec['accuracy']:.2f}" if "accuracy" in rec else "skipped"
        if "skipped" in rec:
            score += f" ({rec['skipped']})"
        lines += [f"**Policy {r}**, held-out context {uid} (score {score}):", "", "```", text[:1000], "```", ""]
    lines += domain.report_sections(rd)
    (rd.path / "report.md").write_text("\n".join(lines))


def _reward_histogram(rd: RunDir) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    r = 0
    while (sel := rd.get(rd.key("select", r))) is not None:
        ax.hist([e["gain"] for e in sel["edits"]], bins=15, alpha=0.6, label=f"round {r}")
        r += 1
    ax.set_xlabel("self-edit reward: adapted accuracy - unadapted accuracy")
    ax.set_ylabel("self-edits")
    if r:
        ax.legend()
    fig.tight_layout()
    fig.savefig(rd.path / "rewards.png", dpi=120)
    plt.close(fig)

