"""The plan of each recipe (`seal.plan.builder`): a name -> builder table; a recipe without its own builder
gets `generic` (model, adapter, grader, data). Builders read configs and data files only."""

from __future__ import annotations

from seal.plan.estimates import ceil_div
from seal.plan.sections import (
    PlanConfig,
    estimates,
    grader_section,
    inner_loop_steps,
    m_step_section,
    model_section,
    tokenizer_for,
    tokens_view,
)


def _load(what: str, fn):
    """Data for the plan, or the reason it cannot be read here (the plan still shows everything else)."""
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - a plan reports unreadable data instead of failing
        return None, f"{what} not readable here: {e}"


def _example(tok, prompt: str, completion: str | None, n: int, stand_in: str) -> dict:
    out = {"prompt_text": prompt, "completion_text": completion, "completion_is": stand_in}
    if tok is None:
        out["tokens"] = "the model's tokenizer is not on this machine: text shown, no token ids"
    else:
        out["tokens"] = tokens_view(tok, prompt, completion, n)
    return out


def restem(cfg, pc: PlanConfig) -> dict:
    from seal.data.sources import load_passages
    from seal.domains.knowledge.directive import for_run
    from seal.domains.knowledge.self_edit import completion_to_documents, passage_document, self_edit_prompt
    from seal.models.loading import format_prompt, uses_chat
    from seal.rl.contexts import round_contexts

    # the directive's nulls resolved against the inner loop, as the run's KnowledgeTask does (implications-hp)
    oc, se = cfg.restem, for_run(cfg.self_edit, cfg.inner_loop.lr, cfg.inner_loop.epochs)
    plan = {"model": model_section(cfg.model, cfg.inner_loop), "grader": grader_section(cfg.grader),
            "seed": cfg.seed, "warnings": []}
    train, err = _load("training data", lambda: load_passages(cfg.data))
    held, err2 = _load("held-out data", lambda: load_passages(cfg.eval_data)[: oc.eval_passages])
    plan["warnings"] += [e for e in (err, err2) if e]
    tok = tokenizer_for(cfg.model.name)
    chat = uses_chat(cfg.model, tok) if tok is not None else bool(cfg.model.chat)
    if tok is None:
        plan["warnings"].append(f"tokenizer of {cfg.model.name} not on this machine: token counts are estimated "
                                "at 4 characters per token")
    n_tokens = (lambda t: len(tok(t)["input_ids"])) if tok is not None else (lambda t: max(1, len(t) // 4))
    rounds = []
    if train is not None:
        need = oc.rounds * oc.contexts_per_round
        if len(train) < need:
            plan["warnings"].append(f"{oc.rounds} rounds x {oc.contexts_per_round} contexts need {need} training "
                                    f"passages; the data gives {len(train)}")
        else:
            rounds = round_contexts(train, oc, cfg.seed)
    plan["rounds"] = [{"round": r, "contexts": [{"uid": c.uid, "title": c.title} for c in ctx],
                       "distinct_titles": len({c.title for c in ctx})} for r, ctx in enumerate(rounds)]
    if held is not None:
        plan["held_out"] = {"passages": len(held), "questions": sum(len(p.questions) for p in held),
                            "distinct_titles": len({p.title for p in held})}
    docs, doc_tokens = [], []
    if rounds:
        first = rounds[0][0]
        prompt = self_edit_prompt(first, se.format, se)
        formatted = format_prompt(tok, prompt, chat, cfg.model.system_prompt) if chat and tok is not None else prompt
        shipped = first.completions[0] if first.completions else None
        plan["self_edit_prompt"] = {"context": first.uid, "chat_template": chat, "text": formatted}
        plan["m_step_example"] = _example(tok, formatted, shipped, pc.show_tokens,
                                          "the first completion shipped with this context in the data file, standing "
                                          "in for the policy's sample (the run trains on the exact sampled tokens)"
                                          if shipped else "a placeholder: the run trains on the exact sampled tokens")
        for c in [c for ctx in rounds for c in ctx]:
            for comp in c.completions[: se.k] or [""]:
                try:
                    d = completion_to_documents(comp, c, se.format, se) if comp else [passage_document(c)]
                except Exception:  # noqa: BLE001 - an unusable shipped completion counts as the passage alone
                    d = [passage_document(c)]
                docs.append(len(d))
                doc_tokens.append(sum(n_tokens(x) + 1 for x in d))
        plan["inner_loop"] = inner_loop_steps(cfg, docs)
        plan["inner_loop"]["documents_from"] = ("the completions shipped with the contexts (their lines + the "
                                                "passage)" if any(c.completions for c in rounds[0]) else
                                                "the passage alone (no completions shipped): a lower bound")
    e_loops = oc.contexts_per_round * se.k * oc.seeds_per_edit
    refs = 1  # `passage`
    held_n = len(held) if held is not None else oc.eval_passages
    eval_loops = held_n * oc.eval_samples + held_n * refs
    plan["inner_loops_per_round"] = {
        "e_step": e_loops, "e_step_formula": f"{oc.contexts_per_round} contexts x {se.k} self-edits x "
                                             f"{oc.seeds_per_edit} seeds",
        "held_out": eval_loops, "held_out_formula": f"{held_n} passages x {oc.eval_samples} self-edit(s) + "
                                                     f"{held_n} x passage-only reference",
        "references": oc.references}
    loc = oc.locality
    loc_loops = min(oc.locality_contexts, held_n) if loc.questions else 0
    plan["inner_loops_per_round"] |= {"locality": loc_loops, "locality_formula": (
        f"the first {loc_loops} held-out self-edits trained again to ask their adapted models the locality "
        "questions" if loc.questions else "locality off (restem.locality.questions=0)")}
    if loc.questions:
        plan["locality"] = {"bank_questions_asked_once": loc.bank_sample or "the whole bank",
                            "questions_per_round": loc.questions * (1 + loc_loops) + loc.bleed_questions * loc_loops,
                            "answer_tokens": loc.max_new_tokens}
    n_pairs = oc.contexts_per_round if cfg.selection.rule == "best_of_k" else oc.contexts_per_round * se.k
    plan["selection"] = {"rule": cfg.selection.rule, "pairs_at_most": n_pairs}
    plan["m_step"] = m_step_section(cfg.m_step, n_pairs)
    if "params" in plan["model"]:
        tokens = cfg.inner_loop.epochs * (sum(doc_tokens) / len(doc_tokens) if doc_tokens else 512)
        prompt_tokens = n_tokens(plan.get("self_edit_prompt", {}).get("text", "x" * 2000))
        q_per = plan.get("held_out", {}).get("questions", 5 * held_n) / max(held_n, 1)
        questions = int((e_loops + eval_loops + loc_loops) * q_per + held_n * q_per)
        if loc.questions:  # the locality answers, counted in answers of the QA length
            asked = plan["locality"]["questions_per_round"] + (loc.bank_sample or 362) / max(oc.rounds + 1, 1)
            questions += int(asked * loc.max_new_tokens / max(cfg.qa_eval.max_new_tokens, 1))
        steps = plan.get("inner_loop", {}).get("optimizer_steps", {}).get("median", cfg.inner_loop.epochs)
        plan["estimates"] = estimates(plan["model"], tokens, steps, e_loops + eval_loops + loc_loops, questions,
                                      cfg.qa_eval.max_new_tokens, oc.contexts_per_round * se.k + held_n,
                                      se.max_new_tokens,
                                      n_pairs * cfg.m_step.epochs * (prompt_tokens + se.max_new_tokens),
                                      plan["m_step"]["optimizer_steps"], cfg.m_step, pc.gpu, cfg.inner_loop)
    return plan


def arc_restem(cfg, pc: PlanConfig) -> dict:
    from seal.domains.arc.data import load_tasks
    from seal.domains.arc.self_edit import parse_edit, policy_prompt
    from seal.domains.arc.ttt import eval_prompts, ttt_examples
    from seal.models.loading import format_prompt, uses_chat
    from seal.rl.contexts import round_contexts

    oc, arc = cfg.restem, cfg.arc
    plan = {"model": model_section(cfg.model, cfg.inner_loop), "seed": cfg.seed, "warnings": [],
            "grader": {"kind": f"pass@{arc.eval.attempts} against the task's solutions (reward 1 if solved, else 0)"}}
    train, err = _load("training tasks", lambda: load_tasks(cfg.arc_data))
    held, err2 = _load("held-out tasks", lambda: load_tasks(cfg.arc_eval_data)[: oc.eval_passages])
    plan["warnings"] += [e for e in (err, err2) if e]
    tok = tokenizer_for(cfg.model.name)
    chat = uses_chat(cfg.model, tok) if tok is not None else cfg.model.chat is not False
    rounds = round_contexts(train, oc, cfg.seed) if train and len(train) >= oc.rounds * oc.contexts_per_round else []
    plan["rounds"] = [{"round": r, "contexts": [{"uid": t.uid, "title": t.uid} for t in ctx]}
                      for r, ctx in enumerate(rounds)]
    oracle = parse_edit(arc.oracle, arc.limits)
    il = cfg.inner_loop
    per_task, tokens = [], []
    n_tokens = (lambda t: len(tok(t)["input_ids"])) if tok is not None else len  # no tokenizer: a token per character
    for t in [t for ctx in rounds for t in ctx] + list(held or []):
        examples = ttt_examples(t, oracle, arc.ttt, seed=0)
        steps = oracle.epochs * ceil_div(len(examples), il.batch_size * il.grad_accum)
        per_task.append({"task": t.uid, "examples": len(examples), "oracle_steps": steps,
                         "within_budget": steps <= arc.ttt.max_steps})
        sample = examples[:50]  # the mean length of a sample of the examples
        tokens.append(oracle.epochs * len(examples) * sum(n_tokens(p + c) for p, c in sample) / max(1, len(sample)))
    plan["ttt_per_task_oracle_config"] = per_task
    if rounds:
        first = rounds[0][0]
        text = policy_prompt(first, arc.limits)
        if chat and tok is None:
            plan["warnings"].append("the chat template needs the tokenizer, which is not on this machine: the "
                                    "self-edit prompt is shown before the template")
        formatted = (format_prompt(tok, text, chat, cfg.model.system_prompt) if tok is not None else text) \
            + arc.response_prefix
        plan["self_edit_prompt"] = {"context": first.uid, "chat_template": chat, "text": formatted}
        plan["m_step_example"] = _example(tok, formatted, arc.oracle, pc.show_tokens,
                                          "the oracle configuration, standing in for a sampled one")
    plan["inner_loops_per_round"] = {"e_step": oc.contexts_per_round * arc.k * oc.seeds_per_edit,
                                     "e_step_formula": f"{oc.contexts_per_round} tasks x {arc.k} configurations",
                                     "held_out": oc.eval_passages * oc.eval_samples + oc.eval_passages,
                                     "held_out_formula": f"{oc.eval_passages} tasks x {oc.eval_samples} "
                                                         f"configurations + {oc.eval_passages} oracle",
                                     "references": oc.references}
    plan["selection"] = {"rule": cfg.selection.rule, "pairs_at_most": oc.contexts_per_round * arc.k}
    plan["m_step"] = m_step_section(cfg.m_step, oc.contexts_per_round * arc.k)
    if "params" in plan["model"] and tokens:
        loops = plan["inner_loops_per_round"]["e_step"] + plan["inner_loops_per_round"]["held_out"]
        steps = sorted(t["oracle_steps"] for t in per_task)[len(per_task) // 2]
        prompts = sum(len(eval_prompts(t, i, arc.eval)) for t in held or [] for i in range(len(t.test)))
        plan["estimates"] = estimates(plan["model"], sum(tokens) / len(tokens), steps, loops,
                                      prompts * (loops // max(1, len(held or [1]))), 64,
                                      oc.contexts_per_round * arc.k * arc.max_attempts, arc.max_new_tokens,
                                      oc.contexts_per_round * arc.k * cfg.m_step.epochs * 1500,
                                      plan["m_step"]["optimizer_steps"], cfg.m_step, pc.gpu, cfg.inner_loop)
        if tok is None:
            plan["warnings"].append("no tokenizer here: test-time-training tokens counted as one per character")
    return plan


def ki_eval(cfg, pc: PlanConfig) -> dict:
    from seal.data.sources import load_passages

    plan = generic(cfg, pc)
    passages, err = _load("data", lambda: load_passages(cfg.data))
    if passages is not None:
        per = {"passage": 1, "self_edit": cfg.self_edit.k * max(1, len(cfg.formats)), "base": 0}  # k per format
        n_files = len(cfg.from_files) if "from_file" in cfg.conditions else 0
        loops = len(passages) * (sum(per.get(c, 0) for c in cfg.conditions) + n_files * cfg.self_edit.k)
        plan["inner_loops"] = {"total": loops, "conditions": list(cfg.conditions), "passages": len(passages)}
    return plan


def generic(cfg, pc: PlanConfig) -> dict:
    """Model, inner-loop adapter, grader and data counts: what every recipe shares."""
    from seal.data.sources import load_passages

    plan = {"model": model_section(cfg.model, getattr(cfg, "inner_loop", None)),
            "grader": grader_section(getattr(cfg, "grader", None)), "seed": cfg.seed, "warnings": []}
    if hasattr(cfg, "data"):
        passages, err = _load("data", lambda: load_passages(cfg.data))
        if passages is not None:
            plan["data"] = {"passages": len(passages), "questions": sum(len(p.questions) for p in passages),
                            "distinct_titles": len({p.title for p in passages})}
        else:
            plan["warnings"].append(err)
    return plan


BUILDERS = {"restem": restem, "arc_restem": arc_restem, "ki_eval": ki_eval, "ki_cpt": ki_eval}
