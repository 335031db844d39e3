"""`plan.md`: the plan (`seal.plan.builder`) as a page a researcher reads before renting GPUs."""

from __future__ import annotations

from seal.infra.report import md_table


def _fmt(n) -> str:
    if isinstance(n, float):
        return f"{n:.3g}"
    if isinstance(n, int) and abs(n) >= 10_000:
        return f"{n:,}"
    return str(n)


def _kv(d: dict) -> list[str]:
    return [f"- **{k.replace('_', ' ')}**: {_fmt(v) if not isinstance(v, dict) else _inline(v)}" for k, v in d.items()]


def _inline(d: dict) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in d.items())


def render(plan: dict) -> str:
    lines = [f"# Plan: recipe `{plan['recipe']}`", "",
             "Written by `plan=true`: no weights were loaded and nothing was trained. Every number below comes "
             "from the config, the data files and the architecture.", ""]
    for w in plan.get("warnings", []):
        lines.append(f"> **Note:** {w}")
    if plan.get("warnings"):
        lines.append("")
    m = plan["model"]
    lines += ["## Model", "", *_kv({k: v for k, v in m.items() if k != "inner_loop_adapter"}), ""]
    if "inner_loop_adapter" in m:
        a = m["inner_loop_adapter"]
        lines += ["## Inner loop", "",
                  f"Each inner loop trains one LoRA adapter (r={a['lora_r']}, alpha={a['lora_alpha']}) on "
                  f"**{', '.join(a['target_modules'])}**: **{a['trainable_params']:,} trainable parameters** per "
                  "adapter.", ""]
    if "inner_loop" in plan:
        il = plan["inner_loop"]
        lines += [f"Documents per inner loop ({il.get('documents_from', '')}): {_inline(il['documents'])}; "
                  f"optimizer steps per inner loop (lr {il['lr']}, {il['epochs']} epochs, batch {il['batch_size']},"
                  f" {il['scheduler']} schedule): {_inline(il['optimizer_steps'])}.", ""]
    lines += ["## Grader", "", *_kv(plan["grader"]), ""]
    if "rounds" in plan:
        lines += ["## Contexts of every round", "",
                  "One seeded shuffle of the training pool, cut into rounds: no context is used twice.", ""]
        for r in plan["rounds"]:
            n_titles = r.get("distinct_titles")
            lines += [f"**Round {r['round']}**: {len(r['contexts'])} contexts"
                      + (f" from {n_titles} distinct titles" if n_titles is not None else "") + ".", "",
                      md_table(["#", "uid", "title"], [[i, c["uid"], c["title"]] for i, c in enumerate(r["contexts"])]),
                      ""]
    if "held_out" in plan:
        lines += ["## Held-out evaluation", "", *_kv(plan["held_out"]), ""]
    if "ttt_per_task_oracle_config" in plan:
        rows = [[t["task"], t["examples"], t["oracle_steps"], "yes" if t["within_budget"] else "NO"]
                for t in plan["ttt_per_task_oracle_config"]]
        lines += ["## Test-time training per task (oracle configuration)", "",
                  md_table(["task", "training examples", "optimizer steps", "within the step budget"], rows), ""]
    if "inner_loops_per_round" in plan:
        n = plan["inner_loops_per_round"]
        lines += ["## Inner loops per round", "",
                  f"- E-step: **{n['e_step']}** ({n['e_step_formula']})",
                  f"- held-out evaluation: **{n['held_out']}** ({n['held_out_formula']}); references "
                  f"recomputed: {n['references']}",
                  *([f"- locality: **{n['locality']}** ({n['locality_formula']})"] if "locality" in n else []), ""]
        if "locality" in plan:
            loc = plan["locality"]
            lines += [f"Locality questions: {loc['bank_questions_asked_once']} bank questions asked of the base model "
                      f"once, then {loc['questions_per_round']} greedy answers of at most {loc['answer_tokens']} "
                      "tokens per round.", ""]
    if "inner_loops" in plan:
        lines += ["## Inner loops", "", *_kv(plan["inner_loops"]), ""]
    if "self_edit_prompt" in plan:
        p = plan["self_edit_prompt"]
        lines += ["## The self-edit prompt", "",
                  f"For context `{p['context']}` (chat template applied: {p['chat_template']}), exactly as the "
                  "policy receives it:", "", "```text", p["text"], "```", ""]
    if "m_step_example" in plan:
        ex = plan["m_step_example"]
        lines += ["## One M-step training example", "",
                  f"Prompt tokens exactly as sampling encoded them, then the completion tokens; the loss is on the "
                  f"completion only. Completion: {ex['completion_is']}.", ""]
        t = ex["tokens"]
        if isinstance(t, str):
            lines += [f"> {t}", "", "Prompt (no loss):", "", "```text", ex["prompt_text"], "```", "",
                      "Completion (loss):", "", "```text", ex["completion_text"] or "…", "```", ""]
        else:
            lines += [f"{t['prompt_tokens']} prompt tokens (no loss), {t['completion_tokens']} completion tokens "
                      f"(loss); the tokenizer adds a BOS itself: {t['tokenizer_adds_bos']}; BOS tokens at the start "
                      f"of the row: {t['leading_bos']}; ends with EOS: {t['eos_last']}.", "",
                      md_table(["position", "id", "token", "loss"], t["rows"]), ""]
    if "m_step" in plan:
        s = plan["m_step"]
        lines += ["## M-step", "",
                  f"{s['update']}; lr {s['lr']}, {s['epochs']} epochs. Launcher `{s['launcher']}` with "
                  f"{s['processes']} process(es) x batch {s['batch_size_per_process']} x gradient accumulation "
                  f"{s['grad_accum']}: **effective batch {s['effective_batch']}** ({s['padding_slots_per_step']} "
                  f"empty padding slot(s) per step). Up to {s['pairs']} pairs ({plan['selection']['rule']}): "
                  f"**{s['optimizer_steps']} optimizer steps**.", ""]
    if plan.get("estimates"):
        e = plan["estimates"]
        g = e["gpu"]
        mem_rows = [[k, *(f"{v[p]:.1f}" for p in ("weights", "trainable state", "activations", "total"))]
                    for k, v in e["memory_gb"].items()]
        time_rows = [[k, f"{v / 3600:.2f}"] for k, v in e["seconds_per_round"].items()]
        lines += ["## Memory and time per GPU (estimates from FLOPs)", "",
                  f"Assumed GPU: {g['name']} ({g['memory_gb']:.0f} GB, {g['bf16_tflops']:.0f} TFLOP/s bf16 dense, "
                  f"{g['mfu']:.0%} of it reached in training, {g['hbm_tbps']} TB/s memory). Training counts 4 N "
                  "FLOPs per token with a frozen base (LoRA) and 6 N for full fine-tuning, and never less than three "
                  "reads of the weights per optimizer step; decoding is memory-bound (each step reads the weights once "
                  "per batch); activations ~34 x tokens x hidden bytes per layer. "
                  f"K = {e['adapters_per_batch_K']} inner-loop adapters train together. These are floors: per-step "
                  "latency, kernel launches, data movement and a judge's round trips come on top (the paper reports "
                  "~6 h per round on 2 x H100 for its three-process setup).", "",
                  md_table(["step", "weights GB", "trainable state GB", "activations GB", "total GB"], mem_rows), "",
                  md_table(["part of a round", "GPU-hours"], time_rows), "",
                  f"**About {e['gpu_hours_per_round']:.1f} GPU-hours per round** on one such GPU.", ""]
    return "\n".join(lines)
