"""Recipe `ki_eval`: how much does the model learn from a passage under each way of adapting it?

    seal experiment=ki_eval data.limit=8
    seal experiment=ki_eval conditions=[base,passage] data.source=file data.path=my_passages.json

Conditions (closed-book accuracy on each passage's questions after the update):
  base       no update; computed once per passage and shared by every other condition's gain
  passage    LoRA SFT on the passage alone
  self_edit  the model writes `self_edit.k` self-edits per passage; one inner loop on each
             (its documents + the passage). With `formats=[...]`, one condition `self_edit:<format>`
             per format (single-call ones such as implications, or the multi-call generators
             entigraph, active_reading, prompt_set: `seal.domains.knowledge.generators`). A self-edit
             the generator recorded no text for (say entigraph found fewer than 2 entities) falls back
             to training on the passage alone (record: `fallback: "passage"` and `why`), so every
             condition covers the same passages; `n_fallback` / `fallback_share` count them per
             condition. An unusable single-call completion (empty, filler only) is skipped, as recorded.
  from_file  the same with completions read from SEAL-format files (`from_files: {label: path}`),
             one condition `from_file:<label>` per file

Steps: load passages and the model -> skip passages that cannot fit (recorded) -> base answers ->
sample self-edits (seeded, recorded in chunks of passages, with what each cost to generate) -> one inner
loop per (condition, passage, sample), each recorded the moment it finishes -> aggregate -> results.json,
report.md, bar chart, accuracy against generated tokens.
A killed run continues with `resume=<run folder>` and redoes nothing that finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from seal.data.passage import Passage
from seal.data.sources import load_passages
from seal.domains.knowledge.conditions import (
    file_completions,
    generation_cost,
    sample_recorded,
    self_edit_conditions,
    validate_conditions,
)
from seal.domains.knowledge.config import ConditionsSetup
from seal.domains.knowledge.task import KnowledgeTask, record_base_accuracies
from seal.eval.diversity import diversity
from seal.eval.locality_check import LocalityCheckConfig, mean_of, recorded_check
from seal.eval.qa import mean_stderr
from seal.eval.stats import clustered_mean_se, compare, comparisons_table, method_sentence
from seal.infra.chunking import pending_chunks
from seal.infra.config import derive_seed
from seal.infra.report import bar_chart, md_table, print_table, scatter_plot
from seal.infra.run_dir import RunDir
from seal.infra.sample_records import read_samples
from seal.infra.tracking import Tracker
from seal.models.loading import load_model


@dataclass(frozen=True)
class KIEvalConfig(ConditionsSetup):  # the shared knowledge sections and the conditions to compare
    # greedy answers to general questions the base model knew (`seal.eval.locality_check`), asked of the adapted
    # models of the first `locality_passages` passages (sample 0) of every condition, while their adapters are live
    locality: LocalityCheckConfig = field(default_factory=LocalityCheckConfig)
    locality_passages: int = 4


def run(cfg: KIEvalConfig, rd: RunDir) -> dict:
    validate_conditions(cfg)
    with Tracker(cfg.wandb, rd, rd.config, name=f"ki_eval-{rd.path.name}") as tracker:
        return _run(cfg, rd, tracker)


def _run(cfg: KIEvalConfig, rd: RunDir, tracker: Tracker) -> dict:
    passages = load_passages(cfg.data)
    model, tok = load_model(cfg.model)
    task = KnowledgeTask(model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                         backend=cfg.backend, seed=derive_seed(cfg.seed, "engine"))

    # 1. passages that cannot fit the inner loop's sequence limit are skipped, with the reason recorded
    usable, skipped = [], []
    for p in passages:
        reason = task.too_long(p)
        if reason:
            skipped.append({"passage": p.uid, "reason": reason})
        else:
            usable.append(p)
    by_uid = {p.uid: p for p in usable}

    # 2. unadapted accuracy: once per passage, shared by every condition's gain
    record_base_accuracies(task, rd, usable, key=lambda p: rd.key("base", p.uid),
                           head=lambda p: {"condition": "base", "passage": p.uid, "sample": 0})

    # 3. the work list: (condition, passage, sample, self-edit text or None, format or skip reason)
    jobs: list[tuple[str, Passage, int, str | None, str]] = []
    # (condition, passage, sample) -> what its record carries beside the result: the self-edit's cost, a fallback
    gen: dict[tuple[str, str, int], dict] = {}
    if "passage" in cfg.conditions:
        jobs += [("passage", p, 0, "", "none") for p in usable]
    for cond, fmt in self_edit_conditions(cfg):
        jobs += self_edit_jobs(cond, fmt, sample_self_edits(task, rd, usable, cfg, fmt), usable, gen)
    if "from_file" in cfg.conditions:
        for label, path in cfg.from_files.items():
            comps = file_completions(label, path, usable)
            for p in usable:
                texts = comps.get(p.uid)
                if texts is None:
                    jobs.append((f"from_file:{label}", p, 0, None, f"passage not in {path}"))
                else:
                    fmt = cfg.from_file_formats.get(label, "implications")
                    jobs += [(f"from_file:{label}", p, s, t, fmt) for s, t in enumerate(texts[: cfg.self_edit.k])]

    # 4. the inner loops, K at a time in fixed chunks, each recorded the moment its chunk finishes; the adapted
    # models of the first passages also answer the general questions the base model knew (found before any update)
    probed = {p.uid for p in usable[:cfg.locality_passages]} if jobs else set()  # base alone changes nothing
    check = recorded_check(rd, cfg.locality, model, tok, task.chat, task.system_prompt) if probed else None
    for cond, p, s, text, reason in jobs:
        if text is None and not rd.has(rd.key(cond, p.uid, s)):
            rd.put(rd.key(cond, p.uid, s), {"condition": cond, "passage": p.uid, "sample": s, "self_edit": None,
                                            "skipped": reason, **gen.get((cond, p.uid, s), {})})
    trainable = [j for j in jobs if j[3] is not None]
    todo = pending_chunks(trainable, task.adapters_per_batch, lambda j: rd.has(rd.key(j[0], j[1].uid, j[2])))
    bar = tqdm(total=sum(len(c) for c in todo), desc=f"inner loops ({task.adapters_per_batch} at a time)",
               disable=not todo)
    for chunk in todo:
        outs = task.adapt_and_evaluate_many(
            [(p, text, fmt, derive_seed(cfg.seed, "inner_loop", cond, p.uid, s)) for cond, p, s, text, fmt in chunk],
            locality=check, locality_items={j for j, (_, p, s, _, _) in enumerate(chunk) if s == 0 and p.uid in probed})
        for (cond, p, s, text, _), out in zip(chunk, outs):
            if "accuracy" in out:
                out["gain"] = out["accuracy"] - rd.get(rd.key("base", p.uid))["accuracy"]
        rd.put_many([(rd.key(cond, p.uid, s), {"condition": cond, "passage": p.uid, "sample": s, "self_edit": text,
                                               **out, **gen.get((cond, p.uid, s), {})})
                     for (cond, p, s, text, _), out in zip(chunk, outs)])
        for (cond, p, s, _, _), out in zip(chunk, outs):
            if "accuracy" in out:
                rd.metric(condition=cond, passage=p.uid, sample=s, accuracy=out["accuracy"], gain=out["gain"],
                          final_loss=out["train"]["final_loss"], train_seconds=out["train"]["seconds"])
                tracker.log({f"{cond}/accuracy": out["accuracy"], f"{cond}/gain": out["gain"],
                             f"{cond}/final_loss": out["train"]["final_loss"]}, axis="inner_loop")
        bar.update(len(chunk))
    bar.close()
    task.close()

    results = summarise(cfg, rd, usable, skipped, by_uid)
    write_report(cfg, rd, results)
    tracker.log({f"final/{c}": v["accuracy"] for c, v in results["conditions"].items()})
    return results


def sample_self_edits(task: KnowledgeTask, rd: RunDir, passages: list[Passage], cfg: KIEvalConfig, fmt: str) -> dict:
    """The k self-edits of format `fmt` per passage with their costs, sampled and recorded in fixed seeded
    chunks of passages (`completions/<format>/<j>`, `seal.infra.sample_records`), so a resume redoes at
    most one chunk. `none` has no model-written text: the passage alone (the paper's cold-start ablation)."""
    return sample_recorded(task, rd, rd.key("completions", fmt), passages, cfg.self_edit, fmt,
                           ("self_edit_sampling", fmt), cfg.seed, head={"format": fmt})


def self_edit_jobs(cond: str, fmt: str, samples: dict, passages: list[Passage], gen: dict) -> list[tuple]:
    """One job per sampled self-edit. One with no text for a recorded reason (say entigraph found fewer
    than 2 entities) falls back to the passage alone (format `none`), its record marked `fallback:
    "passage"` with the reason as `why`, so that every condition is measured on the same passages. Fills
    `gen` with what each record carries beside its result: gen_tokens/gen_seconds, and any fallback."""
    jobs = []
    for p in passages:
        notes, costs = samples.get("notes", {}).get(p.uid) or [], samples.get("cost", {}).get(p.uid) or []
        for s, text in enumerate(samples["completions"][p.uid]):
            why = notes[s] if s < len(notes) else None
            jobs.append((cond, p, s, "", "none") if why else (cond, p, s, text, fmt))
            extra = {"fallback": "passage", "why": why} if why else {}
            if s < len(costs):
                extra |= {"gen_tokens": costs[s]["tokens"], "gen_seconds": costs[s]["seconds"]}
            if extra:
                gen[(cond, p.uid, s)] = extra
    return jobs


def summarise(cfg: KIEvalConfig, rd: RunDir, usable: list[Passage], skipped: list[dict], by_uid) -> dict:
    """Per condition: accuracy over questions (each question averaged over its samples) and its standard
    error clustered by passage (`stderr`; `stderr_iid` treats questions as independent); paired bootstrap
    comparisons over passages of every condition against base, and of self-edit conditions against passage."""
    se_conds = dict(self_edit_conditions(cfg))  # condition -> format
    names = ["base"] + [n for c in cfg.conditions if c not in ("base", "from_file")
                        for n in (list(se_conds) if c == "self_edit" else [c])]
    if "from_file" in cfg.conditions:
        names += [f"from_file:{label}" for label in cfg.from_files]
    out: dict = {"conditions": {}, "skipped": list(skipped), "fallbacks": [], "n_passages": len(usable)}
    clusters: dict[str, dict[str, list[float]]] = {}
    for cond in names:
        per_q: dict[tuple[str, int], list[float]] = {}
        f1s: list[float] = []
        n_skipped = n_fallback = 0
        for rec in rd.records.values():
            if rec.get("condition") != cond or rec["passage"] not in by_uid:
                continue
            if rec.get("fallback"):
                n_fallback += 1
                out["fallbacks"].append({"passage": rec["passage"], "condition": cond, "sample": rec["sample"],
                                         "reason": rec.get("why")})
            if "skipped" in rec:
                n_skipped += 1
                out["skipped"].append({"passage": rec["passage"], "condition": cond, "sample": rec["sample"],
                                       "reason": rec["skipped"]})
                continue
            for q in rec["questions"]:
                per_q.setdefault((q["passage"], q["q"]), []).append(float(q["correct"]))
                f1s.append(q["f1"])
        values = [sum(v) / len(v) for v in per_q.values()]
        clusters[cond] = {p.uid: [] for p in usable}
        for (uid, _), v in per_q.items():
            clusters[cond][uid].append(sum(v) / len(v))
        acc, se_iid = mean_stderr(values)
        out["conditions"][cond] = {"accuracy": acc, "stderr": clustered_mean_se(list(clusters[cond].values()))[1],
                                   "stderr_iid": se_iid, "n_questions": len(values),
                                   "n_clusters": sum(1 for v in clusters[cond].values() if v),
                                   "n_inner_loops": sum(1 for r in rd.records.values() if r.get("condition") == cond
                                                        and "skipped" not in r) if cond != "base" else 0,
                                   "mean_f1": sum(f1s) / len(f1s) if f1s else float("nan"),
                                   "n_skipped": n_skipped}
        if cond in se_conds:  # self-edits trained on the passage alone, their generator having no text
            n_self_edits = sum(1 for r in rd.records.values() if r.get("condition") == cond and r["passage"] in by_uid)
            out["conditions"][cond].update(n_fallback=n_fallback,
                                           fallback_share=n_fallback / n_self_edits if n_self_edits else 0.0)
        texts: dict[str, list[str]] = {}
        for rec in rd.records.values():
            if rec.get("condition") == cond and rec.get("self_edit") and rec["passage"] in by_uid:
                texts.setdefault(rec["passage"], []).append(rec["self_edit"])
        if texts:  # the self-edits of this condition (`seal.eval.diversity`)
            out["conditions"][cond]["diversity"] = diversity(texts)
        if cond != "base":  # the adapted models that answered the general questions (`locality_passages`)
            loc = [r["locality"] for r in rd.records.values() if r.get("condition") == cond and "locality" in r
                   and r["passage"] in by_uid]
            out["conditions"][cond].update(locality=mean_of(loc, "locality"), bleed=mean_of(loc, "bleed"),
                                           n_locality_passages=len(loc))
        # generated tokens and seconds per passage (its k self-edits summed); None where nothing is generated
        samples = read_samples(rd, rd.key("completions", se_conds[cond])) or {} if cond in se_conds else {}
        out["conditions"][cond].update(generation_cost(samples, [p.uid for p in usable], cfg.self_edit.k))
    pairs = [(c, "base") for c in names if c != "base"]
    if "passage" in names:
        pairs += [(c, "passage") for c in names if c in se_conds or c.startswith("from_file:")]
    out["comparisons"] = [compare(b, a, clusters[a], clusters[b], derive_seed(cfg.seed, "bootstrap", b, a))
                          for b, a in pairs]
    per_passage: dict[str, dict] = {}
    for p in usable:
        row: dict = {"title": p.title, "n_questions": len(p.questions)}
        for cond in names:
            accs = [r["accuracy"] for r in rd.records.values()
                    if r.get("condition") == cond and r.get("passage") == p.uid and "accuracy" in r]
            row[cond] = sum(accs) / len(accs) if accs and p.questions else None  # no questions: not scored
        per_passage[p.uid] = row
    out["per_passage"] = per_passage
    rd.write_json("results.json", out)
    return out


def write_report(cfg: KIEvalConfig, rd: RunDir, results: dict) -> None:
    conds = results["conditions"]
    base = conds["base"]["accuracy"]
    def dash(v):
        return "—" if v is None else v

    def fell_back(v):
        return "—" if "n_fallback" not in v else f"{v['n_fallback']} ({v['fallback_share']:.0%})"

    rows = [[c, v["accuracy"], v["stderr"], v["stderr_iid"], v["accuracy"] - base, v["mean_f1"], v["n_questions"],
             v["n_clusters"], v["n_inner_loops"], v["n_skipped"], fell_back(v), dash(v.get("tokens_per_passage")),
             dash(v.get("gen_seconds_per_passage"))] for c, v in conds.items()]
    headers = ["condition", "accuracy", "± clustered SE", "SE if independent", "gain vs base", "token F1",
               "questions", "passages", "inner loops", "skipped", "passage-only fallbacks",
               "generated tokens / passage", "generation seconds / passage"]
    print_table("ki_eval", headers, rows)
    bar_chart(rd.path / "accuracy.png", list(conds), [v["accuracy"] for v in conds.values()],
              [v["stderr"] for v in conds.values()], title=f"Closed-book accuracy ({cfg.model.name})")
    # base and passage generate nothing (0 tokens); from_file's cost is unknown, so it has no point
    points = {c: (v.get("tokens_per_passage") or 0.0, v["accuracy"], v["stderr"]) for c, v in conds.items()
              if c in ("base", "passage") or v.get("tokens_per_passage") is not None}
    cost_plot = any(v.get("tokens_per_passage") is not None for v in conds.values())
    if cost_plot:
        scatter_plot(rd.path / "accuracy_vs_tokens.png", points, title=f"Accuracy against generation ({cfg.model.name})",
                     xlabel="generated tokens per passage (its self-edits summed)")
    formats = ", ".join(f"`{f}`" for f in (cfg.formats or [cfg.self_edit.format]))
    lines = [
        "# ki_eval: knowledge incorporation by condition", "",
        f"Model `{cfg.model.name}`, data `{cfg.data.source}`" + (f" (`{cfg.data.path}`)" if cfg.data.path else "")
        + f", {results['n_passages']} passages, grader `{cfg.grader.kind}`, self-edit format(s) "
        f"{formats} (k={cfg.self_edit.k}), seed {cfg.seed}.", "",
        "Inner loop: " + ", ".join(f"{k}={getattr(cfg.inner_loop, k)}" for k in
                                   ("lora_r", "lora_alpha", "lr", "epochs", "batch_size", "target_modules")) + ".", "",
        md_table(headers, rows), "", "![accuracy](accuracy.png)", "",
        ("Accuracy: each question's correctness averaged over its samples, then over questions. The standard "
         "error is clustered by passage (a passage's questions share one adapter); the SE that treats questions "
         "as independent is shown beside it. Generated tokens / passage: the tokens the model sampled for a "
         "passage's self-edits (every call of a multi-call format), mean over passages; seconds: each generate "
         "batch's wall time shared among its self-edits by their tokens. Passage-only fallbacks: self-edits the "
         "generator had no text for (say entigraph found fewer than 2 entities), trained on the passage alone "
         "so that every condition covers the same passages (count and share of the condition's self-edits)."), "",
        *(["![accuracy against generated tokens](accuracy_vs_tokens.png)", ""] if cost_plot else []),
        "## Paired comparisons", "", comparisons_table(results["comparisons"]), "",
        method_sentence(results["comparisons"]), "",
    ]
    loc = [[c, dash(v["locality"] if v["locality"] is None else round(v["locality"], 3)),
            dash(v["bleed"] if v["bleed"] is None else round(v["bleed"], 3)), v["n_locality_passages"]]
           for c, v in conds.items() if v.get("n_locality_passages")]
    if loc:
        lines += ["## Locality and bleed of the adapted models", "",
                  (f"Greedy answers to {cfg.locality.questions} general-knowledge questions at most, those the base "
                   "model answered right: the share the adapted model still answers right (locality), and the share "
                   "of answers to questions about other subjects that name the passage's new names (bleed); adapted "
                   f"models of the first {cfg.locality_passages} passages (sample 0), mean over passages."), "",
                  md_table(["condition", "locality", "bleed", "passages"], loc), ""]
    div = [[c, *(v["diversity"][k] for k in ("n_texts", "compression_ratio", "distinct_1", "distinct_2", "distinct_3",
                                             "pairwise_similarity", "mean_words"))]
           for c, v in conds.items() if "diversity" in v]
    if div:
        lines += ["## Diversity of the self-edits", "",
                  md_table(["condition", "self-edits", "compression ratio (higher: more repetitive)", "distinct-1",
                            "distinct-2", "distinct-3", "pairwise similarity", "mean words"], div), ""]
    names = list(conds)
    prow = [[uid, row["title"], row["n_questions"]] + ["—" if row[c] is None else row[c] for c in names]
            for uid, row in results["per_passage"].items()]
    lines += ["## Per passage (accuracy, mean over samples)", "",
              md_table(["passage", "title", "questions"] + names, prow[:100]), ""]
    if results.get("fallbacks"):
        lines += ["## Trained on the passage alone (the generator had no text)", "",
                  md_table(["passage", "condition", "sample", "reason"],
                           [[f["passage"], f["condition"], f["sample"], f["reason"]] for f in results["fallbacks"][:50]]),
                  ""]
    if results["skipped"]:
        lines += ["## Skipped", "", md_table(["passage", "condition", "reason"],
                  [[s["passage"], s.get("condition", "all"), s["reason"]] for s in results["skipped"][:50]]), ""]
    examples = [r for r in rd.records.values() if str(r.get("condition")).startswith("self_edit")
                and "questions" in r and not r.get("fallback")][:3]
    if examples:
        lines += ["## Example self-edits", ""]
        for r in examples:
            lines += [f"**{r['passage']}**, {r['condition']} (accuracy {r['accuracy']:.2f}, gain {r['gain']:+.2f})",
                      "", "```",
                      r["self_edit"][:1200], "```", ""]
    (Path(rd.path) / "report.md").write_text("\n".join(lines))
