"""The ReST-EM run's summary (`results.json`) and report (`report.md`, plots), from the records."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from seal.eval.diversity import diversity
from seal.eval.stats import MIN_CLUSTERS, clustered_mean_se, compare, comparisons_table, format_se, method_sentence
from seal.infra.config import derive_seed
from seal.infra.run_dir import RunDir
from seal.infra.sample_records import read_samples

if TYPE_CHECKING:
    from seal.rl.config import LoopSettings, OuterLoopConfig
    from seal.rl.protocols import Domain


def eval_key(rd: RunDir, r: int, cond: str, uid: str, i: int = 0) -> str:
    """Held-out record key; sample 0 keeps the short form, so one-sample runs read (uid) alone."""
    return rd.key("eval", r, cond, uid, *([i] if i else []))


def _adapter_note(rd: RunDir) -> list[str]:
    """Which modules each inner-loop adapter trained and how many parameters it had (`adapter/<r>`)."""
    a = rd.get(rd.key("adapter", 0))
    if not a:
        return []
    return [f"Inner-loop adapters: LoRA r={a['lora_r']}, alpha={a['lora_alpha']} on {', '.join(a['target_modules'])} "
            f"({a['layers']} layers): {a['trainable_params']:,} trainable parameters each.", ""]


def eval_conditions(domain: Domain, oc: OuterLoopConfig, r: int) -> list[str]:
    """The conditions policy r is evaluated under: self_edit, and base + references when they are
    measured for this round (`restem.references`: every round, or round 0 only)."""
    refs = oc.references == "every_round" or r == 0
    return ["self_edit", "base", *domain.references] if refs else ["self_edit"]


def eval_summary(domain: Domain, rd: RunDir, r: int, held_out: list, n_samples: int, conditions: list[str]) -> dict:
    """Held-out score of policy r per condition, from its records. A context's outcomes (all its samples)
    are one cluster: `stderr` is clustered by context, `stderr_iid` treats every outcome as independent,
    and `outcomes` (context uid -> outcomes) keeps what the paired comparisons need."""
    from seal.eval.qa import mean_stderr

    summary = {}
    for cond in conditions:
        samples = range(n_samples) if cond == "self_edit" else range(1)
        recs = [(rd.get(eval_key(rd, r, cond, c.uid, i)), c) for c in held_out for i in samples]
        clusters: dict[str, list[float]] = {}
        for x, c in recs:
            clusters.setdefault(c.uid, []).extend(domain.outcomes(x, c))
        vals = [v for vs in clusters.values() for v in vs]
        acc, se_iid = mean_stderr(vals)
        summary[cond] = {"accuracy": acc, "stderr": clustered_mean_se(list(clusters.values()))[1],
                         "stderr_iid": se_iid, "n_questions": len(vals), "n_clusters": len(clusters),
                         "passage_mean": statistics.fmean(x.get("accuracy", 0.0) for x, _ in recs),
                         "n_skipped": sum("skipped" in x for x, _ in recs), "outcomes": clusters}
    return summary


def comparisons(evals: dict, seed: int, n_boot: int = 10000) -> list[dict]:
    """Paired bootstrap comparisons of held-out self-edit scores, paired by context: round r against
    round 0 and round r-1, and against the base and references of the same round; where a reference was
    measured for the round-0 policy only, against that (named round0_<reference>)."""
    out = []

    def add(rb: int, ra: int, ca: str) -> None:
        a, b = evals[ra][ca]["outcomes"], evals[rb]["self_edit"]["outcomes"]
        s = derive_seed(seed, "bootstrap", rb, "self_edit", ra, ca)
        out.append({"round": rb, **compare(f"round{rb}_self_edit", f"round{ra}_{ca}", a, b, s, n_boot=n_boot)})

    for r in sorted(evals):
        for ref in (c for c in evals[r] if c != "self_edit"):
            add(r, r, ref)
        if r > 0:
            add(r, 0, "self_edit")
            if r - 1 > 0 and r - 1 in evals:
                add(r, r - 1, "self_edit")
            for ref in (c for c in evals[0] if c != "self_edit" and c not in evals[r]):
                add(r, 0, ref)
    return out


def reference_rounds(evals: dict) -> dict[str, list[int]]:
    """Condition -> the rounds (policies) it was measured for."""
    out: dict[str, list[int]] = {}
    for r in sorted(evals):
        for c in evals[r]:
            out.setdefault(c, []).append(r)
    return out


def summarise(rd: RunDir, evals: dict, seed: int | None = None, domain: Domain | None = None) -> dict:
    """results.json: per round the held-out scores, E-step and M-step, and what the domain's optional
    `round_summary(rd, r)` adds (knowledge, format implications-hp: `directives`); paired comparisons (bootstrap
    seeded from `seed`, by default the run config's seed)."""
    seed = rd.config.get("seed", 0) if seed is None else seed
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
        entry["diversity"] = round_diversity(rd, r)
        loc = rd.get(rd.key("locality", r))
        if loc:
            entry["locality"] = {k: loc[k] for k in ("policy", "n_questions", "adapted_locality", "adapted_bleed",
                                                     "n_adapted")}
        if hasattr(domain, "round_summary"):
            entry |= domain.round_summary(rd, r)  # type: ignore[union-attr]
        ms = rd.get(rd.key("m_step", r))
        if ms:
            entry["m_step"] = {k: ms[k] for k in ("steps", "train_loss", "pairs", "trained_pairs", "processes",
                                                 "effective_batch", "grad_accum", "padding_slots", "skipped") if k in ms}
        rounds.append(entry)
    brief = {r: {c: {k: v for k, v in s.items() if k != "outcomes"} for c, s in ev.items()} for r, ev in evals.items()}
    comps = comparisons(evals, seed)
    results = {"rounds": rounds, "final": brief[max(evals)],
               "conditions": {f"round{r}_{c}": v for r in sorted(brief) for c, v in brief[r].items()},
               "reference_rounds": reference_rounds(evals), "comparisons": comps, "paired": headline(comps, max(evals))}
    rd.write_json("results.json", results)
    return results


def round_diversity(rd: RunDir, r: int) -> dict:
    """How varied policy r's self-edits are (`seal.eval.diversity`): on the held-out contexts and, for a
    policy that went through an E-step, on its training contexts; collapse shows as a rising
    compression ratio and pairwise similarity, a falling distinct-n."""
    out = {}
    for name, phase in (("held_out", "eval"), ("e_step", "estep")):
        rec = read_samples(rd, rd.key(phase, r, "completions"))
        if rec:
            out[name] = diversity({uid: [t] if isinstance(t, str) else list(t)
                                   for uid, t in rec["completions"].items()})
    return out


def headline(comps: list[dict], final: int) -> dict:
    """The run's headline: the final policy's held-out score minus round 0's, paired by context."""
    c = next((c for c in comps if c["a"] == "round0_self_edit" and c["b"] == f"round{final}_self_edit"), None)
    if c is None:
        return {}
    return {"final_minus_round0": {"mean": c["diff"], "ci95": [c["lo"], c["hi"]], "verdict": c["verdict"],
                                   "n_clusters": c["n_clusters"]}}


def _locality_section(rounds: list[dict]) -> list[str]:
    """Per round: the policy's locality unadapted, and locality and bleed after a self-edit (`locality/<r>`)."""
    from seal.infra.report import md_table

    found = [e for e in rounds if "locality" in e]
    if not found:
        return []

    def share(x):
        return "—" if x is None else f"{x:.2f}"

    rows = [[e["round"], share(x["policy"]), share(x["adapted_locality"]), share(x["adapted_bleed"]), x["n_adapted"]]
            for e in found if (x := e["locality"])]
    n = found[0]["locality"]["n_questions"]
    return ["## Locality per round", "",
            f"Greedy answers to {n} general-knowledge questions the base model answered right (`restem.locality`): "
            "the share the round's policy still answers right, unadapted and after a held-out self-edit's inner "
            "loop (mean over the first held-out contexts); bleed: the share of answers about other subjects that "
            "name the adapted passage's new names.", "",
            md_table(["round", "policy locality", "after a self-edit", "bleed after a self-edit", "contexts"], rows),
            ""]


def write_report(domain: Domain, s: LoopSettings, rd: RunDir, results: dict) -> None:
    from seal.infra.report import md_table, print_table

    oc, selection, m_cfg, k, seed = s.outer, s.selection, s.m_step, s.k, s.seed
    rounds = results["rounds"]
    conds = ["self_edit", "base", *domain.references]
    cluster = _cluster_name(domain)
    rows = []
    for e in rounds:
        ev, se = e["eval"], e["eval"]["self_edit"]
        rows.append([e["round"]] + [format_se(ev[c]["accuracy"], ev[c]["stderr"]) if c in ev else "—" for c in conds]
                    + [f"{se['stderr_iid']:.3f}", se["n_clusters"], se["n_questions"], se["n_skipped"]])
    headers = ["policy (round)", *(f"{domain.labels[c]} (± clustered SE)" for c in conds),
               "self-edit SE if independent", f"{cluster}s", domain.unit, "unusable self-edits"]
    print_table("ReST-EM: held-out score per round", headers, rows)
    xs = [e["round"] for e in rounds]
    _accuracy_plot(rd.path / "accuracy_per_round.png", xs, plot_series(results, conds, domain.labels),
                   title=f"Held-out score ({domain.unit}; ± clustered SE)")
    erows = [[e["round"], x["n_edits"], x["n_kept"], x["mean_score"], x["mean_gain"],
              x["kept_mean_gain"] if x["kept_mean_gain"] is not None else "—", x["kept_not_beating_base"],
              x["mean_words"], x["n_unusable"], e.get("m_step", {}).get("train_loss", "—")]
             for e in rounds if (x := e.get("e_step"))]
    _reward_histogram(rd)
    comps = results.get("comparisons", [])
    lines = [
        f"# {domain.title}", "",
        domain.describe(),
        (f"{oc.rounds} round(s) x {oc.contexts_per_round} contexts x {k} self-edits x {oc.seeds_per_edit} seeds; "
         f"{oc.eval_samples} self-edit(s) per held-out context; selection `{selection.rule}`; M-step "
         f"{'full FT' if m_cfg.full_finetune else f'LoRA r={m_cfg.lora_r}'} lr {m_cfg.lr}, {m_cfg.epochs} epochs; "
         f"seed {seed}."), "",
        *_adapter_note(rd),
        "## Held-out score per round", "", md_table(headers, rows), "",
        *_reference_note(results, conds, domain.labels),
        "![accuracy per round](accuracy_per_round.png)", "",
        "## Paired comparisons", "",
        comparisons_table(comps, label=_comparison_label, unit=cluster), "",
        method_sentence(comps, cluster), "",
        "## E-step and M-step per round", "",
        md_table(["round", "edits", "kept", "mean score", "mean gain", "kept mean gain", "kept but no gain",
                  "mean words", "unusable", "M-step loss"], erows), "",
        "![reward distribution](rewards.png)", "",
        *_diversity_section(rd, rounds),
        *_locality_section(rounds),
        "## Example self-edits", "",
    ]
    for r in range(len(rounds)):
        comp = read_samples(rd, rd.key("eval", r, "completions"))
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
    lines += ["## Verdict", "", verdict_line(results, cluster), ""]
    (rd.path / "report.md").write_text("\n".join(lines))


def verdict_line(results: dict, unit: str = "passage") -> str:
    """One line on the run's headline: the final policy against round 0, paired, with its interval."""
    h = results.get("paired", {}).get("final_minus_round0")
    if not h:
        return "No verdict: the run evaluated only the round-0 policy."
    lo, hi = h["ci95"]
    final = max(e["round"] for e in results["rounds"])
    interval = "no interval" if lo != lo else f"95% interval [{lo:+.3f}, {hi:+.3f}]"
    return (f"Held-out self-edit accuracy, policy {final} − policy 0: {h['mean']:+.3f} ({interval}, paired over "
            f"{h['n_clusters']} {unit}s): {h['verdict']}"
            + (f" (fewer than {MIN_CLUSTERS} {unit}s: too few to call)." if h["n_clusters"] < MIN_CLUSTERS else "."))


def _diversity_section(rd: RunDir, rounds: list[dict]) -> list[str]:
    from seal.infra.report import line_plot, md_table

    keys = ("n_texts", "compression_ratio", "distinct_1", "distinct_2", "distinct_3", "pairwise_similarity",
            "mean_words")
    rows = [[e["round"], name.replace("_", " "), *(d.get(k) if d.get(k) is not None else "—" for k in keys)]
            for e in rounds for name, d in e.get("diversity", {}).items()]
    if not rows:
        return []
    held = [(e["round"], e["diversity"]["held_out"]) for e in rounds if "held_out" in e.get("diversity", {})]
    xs = [r for r, _ in held]
    series = {m.replace("_", "-"): ([float("nan") if d[m] is None else d[m] for _, d in held], [0.0] * len(held))
              for m in ("distinct_1", "distinct_2", "distinct_3")}  # pairwise similarity needs >1 sample per context
    line_plot(rd.path / "diversity_per_round.png", xs, series, title="Held-out self-edits: diversity per policy",
              xlabel="policy (round)", ylabel="share")
    return ["## Diversity of the policy's self-edits", "",
            ("Compression ratio (raw / gzip bytes of all self-edits; higher = more repetitive), distinct word "
             "n-grams (lower = more repetitive), mean Jaccard similarity of two self-edits for the same context, "
             "and length (`seal.eval.diversity`)."), "",
            md_table(["policy", "contexts", "self-edits", "compression ratio", "distinct-1", "distinct-2",
                      "distinct-3", "pairwise similarity", "mean words"], rows), "",
            "![diversity per round](diversity_per_round.png)", ""]


def _cluster_name(domain: Domain) -> str:
    return "task" if domain.unit.startswith("task") else "passage"


def _comparison_label(c: dict) -> str:
    def name(s: str) -> str:
        r, cond = s.split("_", 1)
        return f"{r.replace('round', 'round ')} {cond}"

    first_round_ref = c["a"].startswith("round0_") and c["a"] != "round0_self_edit" and c["round"] > 0
    return f"{name(c['b'])} − {name(c['a'])}" + (" (reference of the round-0 policy)" if first_round_ref else "")


def _round0_only(results: dict, conds: list[str]) -> list[str]:
    """References measured for the round-0 policy only, in a run with later rounds."""
    rr, last = results.get("reference_rounds", {}), max(e["round"] for e in results["rounds"])
    return [c for c in conds[1:] if rr.get(c) == [0] and last > 0]


def _reference_note(results: dict, conds: list[str], labels: dict[str, str]) -> list[str]:
    only = _round0_only(results, conds)
    if not only:
        return []
    names = ", ".join(labels[c] for c in only)
    return [(f"The references ({names}) were measured for the round-0 policy only (`restem.references="
             f"first_round`): later rounds show — because nothing was measured for their policy, and the plot draws "
             f"the round-0 value as a dashed line. Comparisons of a later round against them compare that round's "
             f"self-edits with the round-0 policy's reference."), ""]


def plot_series(results: dict, conds: list[str], labels: dict[str, str]) -> list[dict]:
    """What the accuracy plot draws: per condition its rounds, values, clustered SEs, and whether it is a
    reference measured for the round-0 policy only (a dashed line across the rounds, labelled so)."""
    only = _round0_only(results, conds)
    out = []
    for c in conds:
        pts = [(e["round"], e["eval"][c]["accuracy"], e["eval"][c]["stderr"]) for e in results["rounds"]
               if c in e["eval"]]
        if pts:
            out.append({"label": labels[c] + (" (round-0 policy)" if c in only else ""), "dashed": c in only,
                        "xs": [p[0] for p in pts], "ys": [p[1] for p in pts], "errs": [p[2] for p in pts]})
    return out


def _accuracy_plot(path, xs: list[int], series: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for s in series:
        line = ax.errorbar(s["xs"], s["ys"], yerr=s["errs"], marker="o", capsize=3, label=s["label"],
                           linestyle="--" if s["dashed"] else "-")
        if s["dashed"]:
            ax.hlines(s["ys"][0], min(xs), max(xs), colors=line[0].get_color(), linestyles="dashed")
    ax.set_xticks(xs)
    ax.set_xlabel("ReST-EM round (policy)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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

