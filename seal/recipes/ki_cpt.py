"""Recipe `ki_cpt`: continued pretraining on many passages at once (REFERENCE 1.1, CPT).

    seal experiment=ki_cpt                       # 20 fictional passages, SmolLM2, CPU
    seal experiment=ki_cpt cpt.update=full       # full fine-tuning (the paper's v2: 1 epoch, lr 7e-5)
    seal experiment=ki_cpt data.num_passages=200 model.name=Qwen/Qwen2.5-7B

The training documents of all n passages are pooled into ONE update, and the updated model answers
every question of every passage closed-book. The update is LoRA (`cpt.update=lora`, the paper's v1
setting: r=32, alpha=64, 3 epochs, lr 1e-3, via the inner loop) or full fine-tuning
(`cpt.update=full`, the paper's v2: AdamW over every weight with the transformers Trainer, linear
schedule with warmup, loss on the documents' tokens only, never on padding); after each condition
the base weights are restored. Conditions:
  base       no update
  passage    the n passages alone
  self_edit  each passage + its `self_edit.k` self-edits, each completion of a single-call format
             whole as one document; a multi-call format's self-edit (`seal.domains.knowledge.generators`)
             gives the documents ki_eval trains on, by `self_edit.generators.split` (paragraphs, the
             default: one per part); with `formats=[...]`, one condition `self_edit:<format>` per format
  from_file  the same with completions from SEAL-format files (`from_files: {label: path}`), each whole
Self-edits are sampled once (seeded, recorded in chunks, with what each cost to generate: results.json
and the report give the generated tokens and seconds per passage); each condition's update and answers
are one record, so a resumed run redoes only the conditions that had not finished. A format whose
self-edit carries its own training settings (`implications-hp`) is refused: one pooled update cannot
apply a per-self-edit lr or epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from seal.data.sources import load_passages
from seal.domains.knowledge.conditions import (
    file_completions,
    generation_cost,
    pooled_documents,
    sample_recorded,
    self_edit_conditions,
    validate_conditions,
)
from seal.domains.knowledge.config import ConditionsSetup
from seal.domains.knowledge.generators import GENERATORS, no_directive
from seal.domains.knowledge.self_edit import MODEL_FORMATS
from seal.domains.knowledge.task import KnowledgeTask, accuracy
from seal.eval.qa import mean_stderr
from seal.eval.stats import clustered_mean_se, compare, comparisons_table, method_sentence
from seal.infra.config import ConfigError, derive_seed
from seal.infra.report import bar_chart, md_table, print_table
from seal.infra.run_dir import RunDir
from seal.infra.tracking import Tracker
from seal.inner_loop.trainer import InnerLoopError, TrainJob
from seal.models.loading import load_model, prompt_ids


@dataclass(frozen=True)
class CPTConfig:
    update: str = "lora"  # lora (the inner loop's LoRA settings) | full (every weight, the paper's v2 settings below)
    full_lr: float = 7e-5
    full_epochs: int = 1
    full_batch_size: int = 8
    full_warmup_ratio: float = 0.03


@dataclass(frozen=True)
class KICPTConfig(ConditionsSetup):  # the shared knowledge sections, the conditions to compare, and cpt
    cpt: CPTConfig = field(default_factory=CPTConfig)


def validate(cfg: KICPTConfig) -> None:
    validate_conditions(cfg)
    if cfg.cpt.update not in ("lora", "full"):
        raise ConfigError(f"cpt.update must be lora or full, got '{cfg.cpt.update}'")
    if cfg.cpt.update == "full" and (cfg.cpt.full_lr <= 0 or cfg.cpt.full_epochs < 1 or cfg.cpt.full_batch_size < 1):
        raise ConfigError(f"cpt: full_lr > 0, full_epochs >= 1 and full_batch_size >= 1 are required, got {cfg.cpt}")
    for _, fmt in self_edit_conditions(cfg):
        if fmt not in MODEL_FORMATS and fmt not in GENERATORS:
            raise ConfigError(f"{'formats' if cfg.formats else 'self_edit.format'} must be a model-written format "
                              f"({', '.join([*MODEL_FORMATS, *GENERATORS])}) for the self_edit condition, got '{fmt}'")
        no_directive(fmt, "ki_cpt pools every self-edit into one update", "formats" if cfg.formats else "self_edit.format")
    if "from_file" in cfg.conditions:
        for label, fmt in cfg.from_file_formats.items():
            no_directive(fmt, "ki_cpt pools every completion whole into one update", f"from_file_formats.{label}")


def run(cfg: KICPTConfig, rd: RunDir) -> dict:
    validate(cfg)
    with Tracker(cfg.wandb, rd, rd.config, name=f"ki_cpt-{rd.path.name}") as tracker:
        return _run(cfg, rd, tracker)


def _run(cfg: KICPTConfig, rd: RunDir, tracker: Tracker) -> dict:
    passages = load_passages(cfg.data)
    cfg = replace(cfg, inner_loop=replace(cfg.inner_loop, adapters_per_batch=1))  # one pooled update
    model, tok = load_model(cfg.model)
    task = KnowledgeTask(model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                         backend=cfg.backend, seed=derive_seed(cfg.seed, "engine"))
    too_long = {p.uid: why for p in passages if (why := task.too_long(p))}
    passages = [p for p in passages if p.uid not in too_long]
    if not passages:
        raise ConfigError("ki_cpt: every passage is longer than inner_loop.max_seq_len")

    # the documents of each condition: passage text always, plus whole completions (a multi-call format's:
    # its documents by self_edit.generators.split), and what the self-edits cost to generate
    completions: dict[str, dict[str, list[str]]] = {}
    formats: dict[str, str] = {}  # self-edit condition -> its format
    cost: dict[str, dict] = {}  # self-edit condition -> tokens_per_passage, gen_seconds_per_passage
    for cond, fmt in self_edit_conditions(cfg):
        samples = sample_recorded(task, rd, rd.key("completions", fmt), passages, cfg.self_edit, fmt,
                                  ("self_edit_sampling", fmt), cfg.seed, desc="sampling self-edits")
        completions[cond], formats[cond] = samples["completions"], fmt
        cost[cond] = generation_cost(samples, [p.uid for p in passages], cfg.self_edit.k)
    for label, path in cfg.from_files.items() if "from_file" in cfg.conditions else ():
        completions[f"from_file:{label}"] = file_completions(label, path, passages)

    conds = (["base"] if "base" in cfg.conditions else []) + (
        ["passage"] if "passage" in cfg.conditions else []) + list(completions)
    for cond in conds:
        key = rd.key("cpt", cond)
        if not rd.has(key):
            rd.put(key, {"condition": cond, **_update_and_answer(task, passages, cond, completions.get(cond), cfg,
                                                                 formats.get(cond), tracker)})
    out = summarise(cfg, rd, conds, too_long, cost)
    tracker.log({f"cpt/{cond}": v["accuracy"] for cond, v in out["conditions"].items()})
    _report(cfg, rd, out)
    return out


def _update_and_answer(task: KnowledgeTask, passages, cond: str, comps: dict[str, list[str]] | None,
                       cfg: KICPTConfig, fmt: str | None = None, tracker: Tracker | None = None) -> dict:
    docs, skipped = [], 0
    if cond != "base":
        docs, skipped = pooled_documents(passages, comps or {}, cfg.self_edit.title_prefix, fmt, cfg.self_edit)
        seed = derive_seed(cfg.seed, "cpt", cond)
        if cfg.cpt.update == "full":
            base_state = {k: v.detach().clone() for k, v in task.inner.model.state_dict().items()}
            stats = full_update(task.inner.model, task.tok, docs, cfg.cpt, task.inner.cfg.max_seq_len, seed,
                                tracker.trainer_callbacks(f"cpt/{cond}/train") if tracker else [])
        else:
            stats = task.inner.train_many([TrainJob(docs, seed)])[0]
            if isinstance(stats, InnerLoopError):
                raise ConfigError(f"ki_cpt: the pooled update for '{cond}' failed: {stats}")
            if tracker:
                tracker.log_steps(f"cpt/{cond}/train", [{"loss": x} for x in stats.losses])
            stats = stats.to_dict()
    full = cfg.cpt.update == "full"
    answers = task.answer(passages, [-1 if cond == "base" or full else 0] * len(passages))
    if cond != "base" and full:
        task.inner.model.load_state_dict(base_state)  # the next condition starts from the base weights
    out = {"questions": {p.uid: qs for p, qs in zip(passages, answers)},
           "accuracy": sum(accuracy(qs) for qs in answers) / len(answers)}
    if cond != "base":
        out.update(n_docs=len(docs), skipped_docs=skipped, train=stats)
    return out


def full_update(model, tok, docs: list[str], cfg: CPTConfig, max_len: int, seed: int, callbacks=()) -> dict:
    """Full fine-tuning of every weight on the documents (causal LM loss on their tokens, padding
    masked), with the transformers Trainer; the model is updated in place. `callbacks`: the run's
    wandb logging (`Tracker.trainer_callbacks`) when it is on."""
    import math
    import tempfile
    import time

    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    rows = []
    for i, d in enumerate(docs):
        ids = prompt_ids(tok, d) + eos
        if len(ids) > max_len:
            raise ConfigError(f"ki_cpt: document {i} has {len(ids)} tokens, more than inner_loop.max_seq_len={max_len}")
        rows.append(ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def collate(batch):
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, r in enumerate(batch):
            ids[j, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[j, :len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

    trainable = [p for p in model.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(
                output_dir=tmp, per_device_train_batch_size=cfg.full_batch_size, num_train_epochs=cfg.full_epochs,
                learning_rate=cfg.full_lr, lr_scheduler_type="linear", warmup_steps=cfg.full_warmup_ratio,
                weight_decay=0.0, save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=False,
                seed=seed, data_seed=seed, use_cpu=not torch.cuda.is_available(), remove_unused_columns=False,
                dataloader_num_workers=0, bf16=False, fp16=False)
            trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": r} for r in rows],
                              data_collator=collate, callbacks=list(callbacks))
            trainer.remove_callback(PrinterCallback)
            result = trainer.train()
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    finally:
        for p in trainable:
            p.requires_grad_(False)
        model.eval()
    if not all(math.isfinite(x) for x in losses):
        raise ConfigError("ki_cpt: the full fine-tuning loss became non-finite (lower cpt.full_lr)")
    return {"steps": result.global_step, "tokens": sum(len(r) for r in rows) * cfg.full_epochs,
            "seconds": round(time.perf_counter() - t0, 3), "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "update": "full"}


def recorded_costs(cfg: KICPTConfig, rd: RunDir) -> dict[str, dict]:
    """Self-edit condition -> its generation cost from the recorded samples (every sampled passage was
    trained on), so a re-render reports what the run did without the tokenizer."""
    from seal.infra.sample_records import read_samples

    out = {}
    for cond, fmt in self_edit_conditions(cfg):
        samples = read_samples(rd, rd.key("completions", fmt)) or {}
        out[cond] = generation_cost(samples, list(samples.get("completions", {})), cfg.self_edit.k)
    return out


def summarise(cfg: KICPTConfig, rd: RunDir, conds: list[str], too_long: dict[str, str],
              cost: dict[str, dict] | None = None) -> dict:
    """results.json from the condition records: accuracy over questions, its standard error clustered by
    passage (`stderr`; `stderr_iid` treats questions as independent), paired bootstrap comparisons over
    passages of each condition against base and of self-edit conditions against passage, and for each
    self-edit condition the generated tokens and seconds per passage (`cost`, `generation_cost`; None for
    conditions that generate nothing or whose cost is unknown)."""
    results, clusters = {}, {}
    for cond in conds:
        rec = rd.get(rd.key("cpt", cond))
        clusters[cond] = {uid: [float(q["correct"]) for q in qs] for uid, qs in rec["questions"].items()}
        vals = [v for vs in clusters[cond].values() for v in vs]
        acc, se_iid = mean_stderr(vals)
        results[cond] = {"accuracy": acc, "stderr": clustered_mean_se(list(clusters[cond].values()))[1],
                         "stderr_iid": se_iid, "n_questions": len(vals), "n_clusters": len(clusters[cond]),
                         "n_docs": rec.get("n_docs", 0), "train": rec.get("train"),
                         "skipped_docs": rec.get("skipped_docs", 0),
                         **(cost or {}).get(cond, {"tokens_per_passage": None, "gen_seconds_per_passage": None})}
    pairs = [(c, "base") for c in conds if c != "base" and "base" in conds]
    pairs += [(c, "passage") for c in conds if "passage" in conds and c not in ("base", "passage")]
    n_passages = len(next(iter(clusters.values()))) if clusters else 0
    out = {"n_passages": n_passages, "skipped_passages": too_long, "conditions": results,
           "comparisons": [compare(b, a, clusters[a], clusters[b], derive_seed(cfg.seed, "bootstrap", b, a))
                           for b, a in pairs]}
    rd.write_json("results.json", out)
    return out


def _report(cfg: KICPTConfig, rd: RunDir, out: dict) -> None:
    conds = out["conditions"]
    headers = ["condition", "accuracy ± clustered SE", "SE if independent", "questions", "documents",
               "train tokens", "train seconds", "generated tokens / passage", "generation seconds / passage"]

    def dash(v):
        return "—" if v is None else v

    rows = [[c, f"{v['accuracy']:.3f} ± {v['stderr']:.3f}", f"{v['stderr_iid']:.3f}", v["n_questions"], v["n_docs"],
             (v["train"] or {}).get("tokens", "—"), (v["train"] or {}).get("seconds", "—"),
             dash(v.get("tokens_per_passage")), dash(v.get("gen_seconds_per_passage"))] for c, v in conds.items()]
    print_table(f"ki_cpt: one pooled update over {out['n_passages']} passages", headers, rows)
    bar_chart(rd.path / "accuracy.png", list(conds), [v["accuracy"] for v in conds.values()],
              [v["stderr"] for v in conds.values()], title=f"Closed-book accuracy after one update on "
                                                           f"{out['n_passages']} passages", ylabel="accuracy")
    il = cfg.inner_loop
    lines = [f"# ki_cpt: continued pretraining on {out['n_passages']} passages", "",
             (f"Model `{cfg.model.name}`, data `{cfg.data.source}`; one pooled update per condition, " + (
                 f"LoRA (r={il.lora_r}, alpha={il.lora_alpha}, lr {il.lr}, {il.epochs} epochs, batch {il.batch_size}, "
                 f"{il.scheduler})" if cfg.cpt.update == "lora" else
                 f"full fine-tuning (lr {cfg.cpt.full_lr}, {cfg.cpt.full_epochs} epoch(s), batch "
                 f"{cfg.cpt.full_batch_size}, linear with {cfg.cpt.full_warmup_ratio:.0%} warmup)") +
              f"; {cfg.self_edit.k} self-edit(s) per passage, format(s) "
              f"{', '.join(f'`{f}`' for f in (cfg.formats or [cfg.self_edit.format]))}, kept whole (a multi-call "
              f"format's: its documents by generators.split={cfg.self_edit.generators.split}, paragraphs: one per "
              f"part); seed {cfg.seed}. Generated tokens / passage: the tokens the model sampled for a passage's "
              "self-edits (every call of a multi-call format), mean over passages; seconds: each generate batch's "
              "wall time shared among its self-edits by their tokens."),
             "", md_table(headers, rows), "", "![accuracy](accuracy.png)", "",
             "## Paired comparisons", "", comparisons_table(out["comparisons"]), "",
             method_sentence(out["comparisons"]), ""]
    if out["skipped_passages"]:
        lines += ["Passages skipped (too long): " + ", ".join(out["skipped_passages"]), ""]
    (rd.path / "report.md").write_text("\n".join(lines))
