"""Recipe `ki_cpt`: continued pretraining on many passages at once (REFERENCE 1.1, CPT).

    seal experiment=ki_cpt                       # 20 fictional passages, SmolLM2, CPU
    seal experiment=ki_cpt data.num_passages=200 model.name=Qwen/Qwen2.5-7B

The training documents of all n passages are pooled into ONE update (LoRA, the paper's v1 setting:
r=32, alpha=64, 3 epochs, lr 1e-3), and the updated model answers every question of every passage
closed-book. Conditions:
  base       no update
  passage    the n passages alone
  self_edit  each passage + its `self_edit.k` self-edits, each completion whole as one document
  from_file  the same with completions from SEAL-format files (`from_files: {label: path}`)
Self-edits are sampled once (one seeded batch, recorded); each condition's update and answers are
one record, so a resumed run redoes only the conditions that had not finished.
"""

from __future__ import annotations


from seal.config import ConfigError, derive_seed
from seal.data import load_passages
from seal.inner_loop import InnerLoopError, TrainJob
from seal.ki_eval import KIEvalConfig, _file_completions
from seal.ki_eval import validate as validate_conditions
from seal.knowledge import KnowledgeTask, accuracy
from seal.models import load_model
from seal.qa_eval import mean_stderr
from seal.report import bar_chart, md_table, print_table
from seal.run_dir import RunDir
from seal.self_edits import MODEL_FORMATS
from seal.tracking import Tracker

KICPTConfig = KIEvalConfig  # the same sections: model, data, self-edits, inner loop, QA, conditions, from_files


def validate(cfg: KICPTConfig) -> None:
    validate_conditions(cfg)
    if "self_edit" in cfg.conditions and cfg.self_edit.format not in MODEL_FORMATS:
        raise ConfigError(f"self_edit.format must be a model-written format ({', '.join(MODEL_FORMATS)}) for the "
                          f"self_edit condition, got '{cfg.self_edit.format}'")


def run(cfg: KICPTConfig, rd: RunDir) -> dict:
    validate(cfg)
    passages = load_passages(cfg.data)
    tracker = Tracker(cfg.wandb, rd, rd.config, name=f"ki_cpt-{rd.path.name}")
    cfg.inner_loop.adapters_per_batch = 1  # one pooled update
    model, tok = load_model(cfg.model)
    task = KnowledgeTask(model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                         backend=cfg.backend, seed=derive_seed(cfg.seed, "engine"))
    too_long = {p.uid: why for p in passages if (why := task.too_long(p))}
    passages = [p for p in passages if p.uid not in too_long]
    if not passages:
        raise ConfigError("ki_cpt: every passage is longer than inner_loop.max_seq_len")

    # the documents of each condition: passage text always, plus whole completions
    completions: dict[str, dict[str, list[str]]] = {}
    if "self_edit" in cfg.conditions:
        key = rd.key("completions", cfg.self_edit.format)
        if not rd.has(key):
            seed = derive_seed(cfg.seed, "self_edit_sampling", cfg.self_edit.format)
            texts = task.sample(passages, cfg.self_edit.format, cfg.self_edit.k, seed, desc="sampling self-edits")
            rd.put(key, {"seed": seed, "completions": {p.uid: t for p, t in zip(passages, texts)}})
        completions["self_edit"] = rd.get(key)["completions"]
    for label, path in cfg.from_files.items() if "from_file" in cfg.conditions else ():
        completions[f"from_file:{label}"] = _file_completions(label, path, passages)

    results = {}
    for cond in (["base"] if "base" in cfg.conditions else []) + (
            ["passage"] if "passage" in cfg.conditions else []) + list(completions):
        key = rd.key("cpt", cond)
        if not rd.has(key):
            rd.put(key, {"condition": cond, **_update_and_answer(task, passages, cond, completions.get(cond), cfg)})
        rec = rd.get(key)
        vals = [float(q["correct"]) for qs in rec["questions"].values() for q in qs]
        acc, se = mean_stderr(vals)
        results[cond] = {"accuracy": acc, "stderr": se, "n_questions": len(vals), "n_docs": rec.get("n_docs", 0),
                         "train": rec.get("train"), "skipped_docs": rec.get("skipped_docs", 0)}
        tracker.log({f"cpt/{cond}": acc})
    out = {"n_passages": len(passages), "skipped_passages": too_long, "conditions": results}
    rd.write_json("results.json", out)
    _report(cfg, rd, out)
    tracker.finish()
    return out


def pooled_documents(passages, comps: dict[str, list[str]], title_prefix: bool) -> tuple[list[str], int]:
    """Each passage's text, then each of its completions whole as one document (REFERENCE 1.1, CPT);
    returns the documents and how many empty completions were skipped."""
    docs, skipped = [], 0
    for p in passages:
        docs.append(f"{p.title}\n{p.context}")
        for text in comps.get(p.uid, []):
            if not text.strip():
                skipped += 1
                continue
            docs.append(f"{p.title}\n{text.strip()}" if title_prefix else text.strip())
    return docs, skipped


def _update_and_answer(task: KnowledgeTask, passages, cond: str, comps: dict[str, list[str]] | None,
                       cfg: KICPTConfig) -> dict:
    docs, skipped = [], 0
    if cond != "base":
        docs, skipped = pooled_documents(passages, comps or {}, cfg.self_edit.title_prefix)
        stats = task.inner.train_many([TrainJob(docs, derive_seed(cfg.seed, "cpt", cond))])[0]
        if isinstance(stats, InnerLoopError):
            raise ConfigError(f"ki_cpt: the pooled update for '{cond}' failed: {stats}")
    answers = task._answer(passages, [-1 if cond == "base" else 0] * len(passages))
    out = {"questions": {p.uid: qs for p, qs in zip(passages, answers)},
           "accuracy": sum(accuracy(qs) for qs in answers) / len(answers)}
    if cond != "base":
        out.update(n_docs=len(docs), skipped_docs=skipped, train=stats.to_dict())
    return out


def _report(cfg: KICPTConfig, rd: RunDir, out: dict) -> None:
    conds = out["conditions"]
    headers = ["condition", "accuracy", "questions", "documents", "train tokens", "train seconds"]
    rows = [[c, f"{v['accuracy']:.3f} ± {v['stderr']:.3f}", v["n_questions"], v["n_docs"],
             (v["train"] or {}).get("tokens", "—"), (v["train"] or {}).get("seconds", "—")] for c, v in conds.items()]
    print_table(f"ki_cpt: one pooled update over {out['n_passages']} passages", headers, rows)
    bar_chart(rd.path / "accuracy.png", list(conds), [v["accuracy"] for v in conds.values()],
              [v["stderr"] for v in conds.values()], title=f"Closed-book accuracy after one update on "
                                                           f"{out['n_passages']} passages", ylabel="accuracy")
    il = cfg.inner_loop
    lines = [f"# ki_cpt: continued pretraining on {out['n_passages']} passages", "",
             (f"Model `{cfg.model.name}`, data `{cfg.data.source}`; one pooled LoRA update per condition "
              f"(r={il.lora_r}, alpha={il.lora_alpha}, lr {il.lr}, {il.epochs} epochs, batch {il.batch_size}, "
              f"{il.scheduler}); {cfg.self_edit.k} self-edit(s) per passage, format `{cfg.self_edit.format}`, "
              f"kept whole; seed {cfg.seed}."),
             "", md_table(headers, rows), "", "![accuracy](accuracy.png)", ""]
    if out["skipped_passages"]:
        lines += ["Passages skipped (too long): " + ", ".join(out["skipped_passages"]), ""]
    (rd.path / "report.md").write_text("\n".join(lines))
