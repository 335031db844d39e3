"""Recipe `ki_decoding`: use what a small adapted model learned at decoding time (REFERENCE 4, 5).

    seal experiment=ki_decoding        # SmolLM2 on CPU, 2 x 10 fictional passages

Two sets of fictional passages, A and B. Each passage gets `self_edit.k` self-edits from the base
model; a set's passages and self-edits are pooled into one LoRA update (as in `ki_cpt`).
  M   = the base model with set A's adapter merged into its weights (a separate copy);
  S   = the base model with set B's adapter (kept as an adapter: S and the plain base share weights).
Conditions, each answering held-out questions about A and about B closed-book:
  base            the plain model
  M, S            each alone
  proxy(alpha)    M steered by S: log p_M + alpha (log p_S - log p_base), expert S and anti-expert the
                  same weights with the adapter off (`seal.decoding.proxy_tuning`)
  co_llm(eta)     M writes, and defers a token to S when its deferral head says so (`seal.decoding.co_llm`);
                  one point per threshold: accuracy against the fraction of tokens S wrote
  M+B             M with set B's update trained on top (the "just retrain it" answer)
The deferral head trains on the questions of some passages of each set (`head_passages`) and its
threshold is chosen on the questions of others (`val_passages`); the test questions are those of
the remaining passages only. Adapters and the head are saved as safetensors in the run folder and
every condition is one record, so a resumed run redoes only what had not finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from safetensors.torch import load_file, save_file

from seal.chat.adapter_store import apply_adapter
from seal.data.passage import Passage
from seal.data.sources import load_passages
from seal.decoding.co_llm import (
    CoLLMConfig,
    CoLLMGenerator,
    DeferralHead,
    choose_eta,
    defer_probs,
    eta_for_rate,
    marginal_nll,
    token_features,
    train_head,
)
from seal.decoding.proxy_tuning import ProxyGenerator
from seal.decoding.streams import Stream
from seal.domains.knowledge.conditions import pooled_documents, sample_in_chunks
from seal.domains.knowledge.config import KnowledgeSetup
from seal.domains.knowledge.generators import no_directive
from seal.domains.knowledge.self_edit import MODEL_FORMATS
from seal.domains.knowledge.task import KnowledgeTask
from seal.eval.qa import answer_questions, grade_records, mean_stderr, per_passage
from seal.eval.stats import clustered_mean_se
from seal.infra.config import ConfigError, derive_seed
from seal.infra.report import md_table, print_table
from seal.infra.run_dir import RunDir
from seal.infra.sample_records import read_samples
from seal.infra.tracking import Tracker
from seal.inner_loop.trainer import InnerLoopError, TrainJob
from seal.models.loading import format_prompt, load_model


@dataclass(frozen=True)
class DecodingConfig:
    set_size: int = 10  # passages in each of A and B
    head_passages: int = 2  # of each set: their questions train the deferral head
    val_passages: int = 2  # of each set: their questions choose eta
    head_documents: bool = True  # the head also trains on the head passages' training documents (more tokens)
    alphas: list[float] = field(default_factory=lambda: [1.0])
    co_llm: CoLLMConfig = field(default_factory=CoLLMConfig)  # the deferral head; both models stay frozen


@dataclass(frozen=True)
class KIDecodingConfig(KnowledgeSetup):  # the shared knowledge sections + its own
    decoding: DecodingConfig = field(default_factory=DecodingConfig)


def validate(cfg: KIDecodingConfig) -> None:
    d = cfg.decoding
    if d.head_passages < 1 or d.val_passages < 1 or d.set_size - d.head_passages - d.val_passages < 1:
        raise ConfigError(f"decoding: each set needs at least one passage for the head, one for validation and one "
                          f"for the test (set_size={d.set_size}, head_passages={d.head_passages}, "
                          f"val_passages={d.val_passages})")
    if cfg.self_edit.format not in MODEL_FORMATS:
        raise ConfigError(f"self_edit.format must be model-written ({', '.join(MODEL_FORMATS)}), got "
                          f"'{cfg.self_edit.format}'")
    no_directive(cfg.self_edit.format, "ki_decoding pools each set's self-edits into one update")
    if cfg.backend.name != "hf":
        raise ConfigError("ki_decoding combines several models' next-token distributions, which runs on the "
                          "transformers path only: set backend=hf")
    if cfg.decoding.co_llm.eta not in ("youden", "rate"):
        try:
            float(cfg.decoding.co_llm.eta)
        except ValueError:
            raise ConfigError(f"decoding.co_llm.eta must be youden, rate or a number, got "
                              f"'{cfg.decoding.co_llm.eta}'") from None


@dataclass
class _Split:
    test: list[Passage]
    head: list[Passage]
    val: list[Passage]


def _split(passages: list[Passage], d: DecodingConfig) -> _Split:
    n_test = d.set_size - d.head_passages - d.val_passages
    return _Split(passages[:n_test], passages[n_test:n_test + d.head_passages], passages[n_test + d.head_passages:])


def run(cfg: KIDecodingConfig, rd: RunDir) -> dict:
    validate(cfg)
    with Tracker(cfg.wandb, rd, rd.config, name=f"ki_decoding-{rd.path.name}") as tracker:
        return _run(cfg, rd, tracker)


def _run(cfg: KIDecodingConfig, rd: RunDir, tracker: Tracker) -> dict:
    d = cfg.decoding
    passages = load_passages(cfg.data)
    if len(passages) < 2 * d.set_size:
        raise ConfigError(f"ki_decoding: two sets of {d.set_size} passages need {2 * d.set_size}, data gives "
                          f"{len(passages)} (raise data.num_passages)")
    sets = {"A": passages[:d.set_size], "B": passages[d.set_size:2 * d.set_size]}
    splits = {name: _split(ps, d) for name, ps in sets.items()}
    cfg = replace(cfg, inner_loop=replace(cfg.inner_loop, adapters_per_batch=1))
    base_model, tok = load_model(cfg.model)
    task = KnowledgeTask(base_model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                         seed=derive_seed(cfg.seed, "engine"))
    for ps in sets.values():
        for p in ps:
            if why := task.too_long(p):
                raise ConfigError(f"ki_decoding: passage {p.uid}: {why}")

    # 1. self-edits from the base model, and each set's pooled documents
    comps = sample_in_chunks(task, rd, "completions", sets["A"] + sets["B"], cfg.self_edit, ("self_edit_sampling",),
                             cfg.seed)
    docs = {name: pooled_documents(ps, comps, cfg.self_edit.title_prefix)[0] for name, ps in sets.items()}

    # 2. M = base + A's update merged (its own copy); S = base + B's update in slot 0; M+B on M's copy
    a_state = _adapter(rd, task, "A", docs["A"], derive_seed(cfg.seed, "update", "A"))
    m_model, _ = load_model(cfg.model)
    apply_adapter(m_model, a_state, task.inner.lora.scale)
    m_task = KnowledgeTask(m_model, tok, cfg.model, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                           seed=derive_seed(cfg.seed, "engine"))
    _adapter(rd, m_task, "M+B", docs["B"], derive_seed(cfg.seed, "update", "B"))
    _adapter(rd, task, "B", docs["B"], derive_seed(cfg.seed, "update", "B"))

    test = splits["A"].test + splits["B"].test
    n_a = len(splits["A"].test)
    results: dict[str, dict] = {}

    def record(cond: str, answer) -> None:
        key = rd.key("eval", cond)
        if not rd.has(key):
            rd.put(key, {"condition": cond, **answer()})
        results[cond] = _summary(rd.get(key), n_a)
        tracker.log({f"{cond}/A": results[cond]["A"], f"{cond}/B": results[cond]["B"]})

    def plain(t: KnowledgeTask, slot: int):
        return lambda: {"questions": t.answer(test, [slot] * len(test))}

    # 3. the single models
    record("base", plain(task, -1))
    record("M", plain(m_task, -1))
    record("S", plain(task, 0))
    record("M+B", plain(m_task, 0))

    # 4. proxy-tuning: M steered by (S - base), one copy of the base weights for both
    fmt = lambda text: format_prompt(tok, text, task.chat, task.system_prompt)
    m_stream = Stream(m_model, tok, "M", format=fmt, context=m_task.inner.base_model)
    s_stream = Stream(base_model, tok, "S", format=fmt, context=lambda: task.inner.adapter(0))
    anti = Stream(base_model, tok, "base", format=fmt, context=task.inner.base_model)
    for alpha in d.alphas:
        gen = ProxyGenerator(m_stream, s_stream, anti, alpha)
        record(f"proxy(alpha={alpha:g})",
               lambda gen=gen: {"questions": per_passage(_answer_with(gen, test, cfg, task), test)})

    # 5. Co-LLM: M defers to S
    head = _deferral_head(rd, cfg, m_stream, s_stream, splits)
    etas = rd.get("co_llm/head")["etas"]
    for label, eta in etas.items():
        def co(eta=eta):
            gen = CoLLMGenerator(m_stream, s_stream, head, eta)
            records = _answer_with(gen, test, cfg, task)
            for q, o in zip(records, gen.last):  # answer_questions keeps the order of its prompts
                q["deferred"] = round(o.deferred_fraction, 4)
            return {"questions": per_passage(records, test), "eta": eta, "counts": gen.counts}
        record(f"co_llm({label})", co)
        results[f"co_llm({label})"]["eta"] = eta

    # the ceiling for any router: each question answered by the model that holds its set
    results["oracle routing"] = {**{k: results["M"][k] for k in ("A", "A_stderr", "n_A")},
                                 **{k: results["S"][k] for k in ("B", "B_stderr", "n_B")},
                                 "mean": (results["M"]["A"] + results["S"]["B"]) / 2}
    out = {"sets": {n: {"test": [p.uid for p in s.test], "head": [p.uid for p in s.head],
                        "val": [p.uid for p in s.val]} for n, s in splits.items()},
           "head": rd.get("co_llm/head")["stats"], "conditions": results,
           "updates": {n: rd.get(rd.key("adapter", n))["train"] for n in ("A", "B", "M+B")}}
    rd.write_json("results.json", out)
    _report(cfg, rd, out)
    return out


def _adapter(rd: RunDir, task: KnowledgeTask, name: str, docs: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Train one pooled update into slot 0 of `task`, or load it back from the run folder."""
    path = rd.path / "adapters" / f"{name.replace('+', '_')}.safetensors"
    key = rd.key("adapter", name)
    if rd.has(key) and path.exists():
        state = load_file(str(path))
    else:
        stats = task.inner.train_many([TrainJob(docs, seed)])[0]
        if isinstance(stats, InnerLoopError):
            raise ConfigError(f"ki_decoding: the update '{name}' failed: {stats}")
        state = task.inner.lora.slot_state(0)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        tmp.replace(path)
        rd.put(key, {"name": name, "n_docs": len(docs), "seed": seed, "train": stats.to_dict()})
    task.inner.lora.load_slot(0, state)
    return state


def _answer_with(gen, passages: list[Passage], cfg: KIDecodingConfig, task: KnowledgeTask) -> list[dict]:
    """Graded closed-book answers through a multi-model generator, which formats the raw requests
    (chat=False here) per stream."""
    raw = replace(cfg.qa_eval, base_cue="", base_first_line=False)  # the streams' own formatting applies
    return grade_records(answer_questions(passages, gen, raw, task.tok, chat=False), task.grader)


def _qa_examples(passages: list[Passage], cfg: KIDecodingConfig) -> list[tuple[str, str]]:
    return [(cfg.qa_eval.template.format(title=p.title, question=q.question), q.answer)
            for p in passages for q in p.questions]


def _deferral_head(rd: RunDir, cfg: KIDecodingConfig, m: Stream, s: Stream, splits: dict[str, _Split]) -> DeferralHead:
    """Train the head on the head passages' questions (gold answers), choose eta on the validation
    passages' questions, or load both back."""
    c = cfg.decoding.co_llm
    head = DeferralHead(m.model.config.hidden_size)
    path = rd.path / "adapters" / "deferral_head.safetensors"
    if rd.has("co_llm/head") and path.exists():
        head.load_state_dict(load_file(str(path)))
        return head
    head_ps = splits["A"].head + splits["B"].head
    examples = _qa_examples(head_ps, cfg)
    if cfg.decoding.head_documents:  # the documents both updates trained on, read with no prompt
        comps = read_samples(rd, "completions")["completions"]
        examples += [("", doc) for doc in pooled_documents(head_ps, comps, cfg.self_edit.title_prefix)[0]]
    train = token_features(m, s, examples, desc="head features")
    val_a = token_features(m, s, _qa_examples(splits["A"].val, cfg), desc="validation features A")
    val_b = token_features(m, s, _qa_examples(splits["B"].val, cfg), desc="validation features B")
    val = {k: torch.cat([val_a[k], val_b[k]]) for k in val_a}
    n_val_a = len(val_a["weak"])
    stats = train_head(head, train, c, seed=derive_seed(cfg.seed, "co_llm"))
    p = defer_probs(head, val["hidden"])
    etas = {f"rate={r:g}": eta_for_rate(p, r) for r in c.sweep_rates}
    try:
        etas[f"chosen:{c.eta}"] = choose_eta(c, p, val["weak"])
    except ValueError as e:
        stats["eta_error"] = str(e)
    with torch.no_grad():
        val_nll = float(marginal_nll(head(val["hidden"]), val["lp_base"], val["lp_asst"]).mean())
        half = float(marginal_nll(torch.zeros(len(p)), val["lp_base"], val["lp_asst"]).mean())
    stats.update(val_tokens=len(p), val_weak_positive=float(val["weak"].mean()), val_marginal_nll=val_nll,
                 val_nll_half_mixture=half, val_nll_base_only=float(-val["lp_base"].mean()),
                 val_nll_assistant_only=float(-val["lp_asst"].mean()),
                 mean_defer_prob_val_A=float(p[:n_val_a].mean()), mean_defer_prob_val_B=float(p[n_val_a:].mean()))
    path.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path))
    rd.put("co_llm/head", {"stats": stats, "etas": etas})
    return head


def _summary(rec: dict, n_a: int) -> dict:
    """Accuracy on A and on B; `*_stderr` is clustered by passage (its questions share the update),
    `*_stderr_iid` treats questions as independent."""
    by_passage = rec["questions"]
    correct = [[float(q["correct"]) for q in qs] for qs in by_passage]
    a = [v for qs in correct[:n_a] for v in qs]
    b = [v for qs in correct[n_a:] for v in qs]
    (ma, sa), (mb, sb) = mean_stderr(a), mean_stderr(b)
    out = {"A": ma, "A_stderr": clustered_mean_se(correct[:n_a])[1], "A_stderr_iid": sa,
           "B": mb, "B_stderr": clustered_mean_se(correct[n_a:])[1], "B_stderr_iid": sb,
           "mean": (ma + mb) / 2, "n_A": len(a), "n_B": len(b)}
    deferred = [q["deferred"] for qs in by_passage for q in qs if "deferred" in q]
    if deferred:
        out["deferred_A"] = sum(q["deferred"] for qs in by_passage[:n_a] for q in qs) / max(len(a), 1)
        out["deferred_B"] = sum(q["deferred"] for qs in by_passage[n_a:] for q in qs) / max(len(b), 1)
        out["deferred"] = sum(deferred) / len(deferred)
    if "counts" in rec:
        out["forwards"] = rec["counts"]
    return out


def _report(cfg: KIDecodingConfig, rd: RunDir, out: dict) -> None:
    conds = out["conditions"]
    headers = ["condition", "accuracy on A (± clustered SE)", "accuracy on B (± clustered SE)", "mean",
               "tokens deferred to S (A / B)"]
    rows = [[c, f"{v['A']:.3f} ± {v['A_stderr']:.3f}", f"{v['B']:.3f} ± {v['B_stderr']:.3f}", v["mean"],
             f"{v['deferred_A']:.2f} / {v['deferred_B']:.2f}" if "deferred" in v else "—"] for c, v in conds.items()]
    print_table("ki_decoding: closed-book accuracy on held-out questions", headers, rows)
    _plot(rd.path / "deferral.png", conds)
    h, il = out["head"], cfg.inner_loop
    n_a, n_b = next(iter(conds.values()))["n_A"], next(iter(conds.values()))["n_B"]
    lines = ["# ki_decoding: proxy-tuning and Co-LLM with SEAL-adapted models", "",
             (f"Model `{cfg.model.name}`, data `{cfg.data.source}`; sets A and B of {cfg.decoding.set_size} passages, "
              f"each one pooled LoRA update on its passages and {cfg.self_edit.k} self-edit(s) per passage "
              f"(r={il.lora_r}, lr {il.lr}, {il.epochs} epochs). Test: {n_a} questions about A and {n_b} about B, "
              f"from passages the deferral head never saw. Seed {cfg.seed}."), "",
             md_table(headers, rows), "",
             ("Standard errors are clustered by passage: a passage's questions share one update, so they are not "
              "independent."), "", "![accuracy against deferral](deferral.png)", "",
             (f"Deferral head: {h['tokens']} training tokens ({h['weak_positive']:.2f} weakly labelled for S); "
              f"marginal NLL {h['marginal_nll_before']:.3f} (untrained head: a 50/50 mixture) → "
              f"{h['marginal_nll_after']:.3f} on training tokens. On {h['val_tokens']} validation answer tokens: "
              f"{h['val_marginal_nll']:.3f} (50/50 mixture {h['val_nll_half_mixture']:.3f}, M alone "
              f"{h['val_nll_base_only']:.3f}, S alone {h['val_nll_assistant_only']:.3f}); mean deferral probability "
              f"{h['mean_defer_prob_val_A']:.3f} on questions about A and {h['mean_defer_prob_val_B']:.3f} about B."), ""]
    (rd.path / "report.md").write_text("\n".join(lines))


def _plot(path, conds: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    co = sorted(((v["deferred"], v) for c, v in conds.items() if c.startswith("co_llm(rate")), key=lambda t: t[0])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for key, colour in (("A", "#4C72B0"), ("B", "#DD8452"), ("mean", "#55A868")):
        ax.plot([x for x, _ in co], [v[key] for _, v in co], marker="o", color=colour, label=f"Co-LLM, {key}")
    chosen = [(c, v) for c, v in conds.items() if c.startswith("co_llm(chosen")]
    for c, v in chosen:
        ax.scatter([v["deferred"]], [v["mean"]], marker="*", s=160, color="#55A868", zorder=5, label=c)
    styles = {"M": ("grey", ":"), "S": ("grey", "--"), "M+B": ("grey", "-."), "oracle routing": ("black", "-")}
    proxy_styles = iter([(0, (5, 2)), "-", (0, (1, 1)), (0, (3, 1, 1, 1))] * 4)
    for c, v in conds.items():
        if c in styles:
            colour, ls = styles[c]
            ax.axhline(v["mean"], color=colour, linestyle=ls, linewidth=1, label=f"{c} (mean)")
        elif c.startswith("proxy"):
            ax.axhline(v["mean"], color="#C44E52", linestyle=next(proxy_styles), linewidth=1.2, label=f"{c} (mean)")
    ax.set_xlabel("fraction of answer tokens written by S")
    ax.set_ylabel("closed-book accuracy")
    ax.set_title("M defers to the specialist S")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
