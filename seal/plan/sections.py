"""The parts of a plan (`seal.plan.builder`) that every recipe's builder (`seal.plan.recipes`) is made
of: the plan's settings (`PlanConfig`), the tokenizer lookup, the M-step token view, and the model,
M-step, grader, inner-loop and estimates sections."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from seal.plan.estimates import GPU, architecture, ceil_div, generate_seconds, memory_gb, train_seconds


@dataclass(frozen=True)
class PlanConfig:
    gpu: GPU = field(default_factory=GPU)
    show_tokens: int = 12  # token rows shown at each end of the prompt and of the completion


def tokenizer_for(name: str):
    """The model's tokenizer from this machine alone (tiny, embedded GGUF, local folder, HF cache), or None."""
    from seal.models.loading import EMBEDDED, TINY

    try:
        if name in TINY:
            from seal.models.tiny import tiny_tokenizer

            return tiny_tokenizer(add_bos=name.endswith("-bos"))
        from transformers import AutoTokenizer

        if name in EMBEDDED:
            from seal.models.loading import cache_root, embedded_gguf

            cached = cache_root() / "models" / name
            if (cached / "tokenizer.json").is_file():
                return AutoTokenizer.from_pretrained(cached)
            folder, gguf_file = embedded_gguf(name)
            return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not on this machine: the plan says so
        return None


def tokens_view(tok, prompt: str, completion: str | None, n: int) -> dict:
    """The M-step row `seal.rl.m_step.m_step_examples` builds, as (position, id, text, loss) rows."""
    from seal.rl.m_step import m_step_examples

    pair = {"prompt": prompt, "completion": completion or "…"}
    rows, _ = m_step_examples(tok, [pair], max_length=10**9)
    ids, mask = rows[0]["input_ids"], rows[0]["completion_mask"]
    n_prompt = mask.index(1)
    ends = [(0, min(n, n_prompt)), (max(0, n_prompt - n), n_prompt), (n_prompt, min(len(ids), n_prompt + n)),
            (max(n_prompt, len(ids) - n), len(ids))]
    show = sorted({i for a, b in ends for i in range(a, b)})
    table = [[i, ids[i], repr(tok.decode([ids[i]])), "yes" if mask[i] else "no"] for i in show]
    from seal.models.loading import bos_id

    bos = getattr(tok, "bos_token_id", None)
    leading = next((i for i, t in enumerate(ids) if t != bos), len(ids)) if bos is not None else 0
    return {"prompt_tokens": n_prompt, "completion_tokens": len(ids) - n_prompt, "rows": table,
            "tokenizer_adds_bos": bos_id(tok) is not None, "leading_bos": leading,
            "eos_last": ids[-1] == tok.eos_token_id}


def model_section(model_cfg, inner_cfg) -> dict:
    arch = architecture(model_cfg.name)
    out = {"name": model_cfg.name, "dtype": model_cfg.dtype,
           "dtype_on_gpu": "bfloat16" if model_cfg.dtype == "auto" else model_cfg.dtype}
    if arch is None:
        out["architecture"] = "unknown here (no config.json locally, not in seal's table): no size estimates"
        return out
    out |= {"architecture_source": arch.source, "params": arch.params, "layers": arch.layers, "hidden": arch.hidden}
    if inner_cfg is not None:
        out["inner_loop_adapter"] = {"target_modules": list(inner_cfg.target_modules), "lora_r": inner_cfg.lora_r,
                                     "lora_alpha": inner_cfg.lora_alpha,
                                     "trainable_params": arch.lora_params(list(inner_cfg.target_modules),
                                                                          inner_cfg.lora_r)}
    return out


def m_step_section(m_cfg, n_pairs: int) -> dict:
    from seal.rl.m_step import optimizer_steps, processes, step_layout

    layout = step_layout(m_cfg, processes(m_cfg))
    return {"launcher": m_cfg.launcher, "processes": layout.processes, "batch_size_per_process": m_cfg.batch_size,
            "grad_accum": layout.grad_accum, "effective_batch": layout.effective,
            "padding_slots_per_step": layout.padding, "pairs": n_pairs, "epochs": m_cfg.epochs,
            "optimizer_steps": optimizer_steps(n_pairs, m_cfg), "lr": m_cfg.lr,
            "update": "full fine-tuning" if m_cfg.full_finetune else
            f"LoRA r={m_cfg.lora_r} alpha={m_cfg.lora_alpha} on {', '.join(m_cfg.target_modules)}, merged"}


def grader_section(g) -> dict:
    if g is None:
        return {"kind": "defined by the recipe's own task (no QA grader)"}
    out = {"kind": g.kind}
    if g.kind == "openai":
        import os

        from seal.eval.graders import judge_cache_dir

        out |= {"judge": g.model, "endpoint": g.base_url, "concurrency": g.concurrency, "timeout_s": g.timeout_s,
                "cache": str(judge_cache_dir(g)) if g.cache else "off", "key_variable": g.api_key_env,
                "key_set_here": bool(os.environ.get(g.api_key_env))}
    elif g.kind == "judge":
        out["judge"] = g.judge_model
    else:
        out["note"] = "string match, not the paper's LLM judge: numbers are not comparable with the paper's"
    return out


def inner_loop_steps(cfg, doc_counts: list[int]) -> dict:
    il = cfg.inner_loop
    per = [il.epochs * ceil_div(ceil_div(n, il.batch_size), il.grad_accum) for n in doc_counts]
    return {"documents": _spread(doc_counts), "optimizer_steps": _spread(per), "lr": il.lr, "epochs": il.epochs,
            "batch_size": il.batch_size, "scheduler": il.scheduler}


def _spread(xs: list[float]) -> dict:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)} if xs else {}


def estimates(model: dict, tokens_per_inner_loop: float, steps_per_inner_loop: float, inner_loops: int,
              questions: int, qa_new: int, samples: int, sample_new: int, mstep_tokens: float, mstep_steps: int,
              m_cfg, gpu: GPU, inner_cfg) -> dict:
    """Per-GPU memory and time of one round, from FLOPs; None where the architecture is unknown."""
    arch = architecture(model["name"])
    if arch is None:
        return {}
    lora = model["inner_loop_adapter"]["trainable_params"]
    k = max(1, min(inner_cfg.max_adapters, int(inner_cfg.memory_budget_gb * 2**30 // (lora * 16))))
    m_lora = 0 if m_cfg is None or m_cfg.full_finetune else arch.lora_params(list(m_cfg.target_modules), m_cfg.lora_r)
    seconds = {
        # K adapters share every step's weight reads (seal.inner_loop.multi_lora)
        "inner-loop training": ceil_div(inner_loops, k) * train_seconds(arch.params, k * tokens_per_inner_loop, gpu,
                                                                         True, steps_per_inner_loop),
        "closed-book answers": generate_seconds(arch.params, questions, qa_new, 16 * k, gpu),
        "self-edit sampling": generate_seconds(arch.params, samples, sample_new, 64, gpu),
    }
    if m_cfg is not None:
        seconds["M-step"] = train_seconds(arch.params, mstep_tokens, gpu, not m_cfg.full_finetune, mstep_steps)
    out = {"gpu": asdict(gpu), "adapters_per_batch_K": k,
           "memory_gb": {"inner loop (K adapters, one step)": memory_gb(arch, inner_cfg.token_budget, lora, k)},
           "seconds_per_round": seconds, "gpu_hours_per_round": sum(seconds.values()) / 3600}
    if m_cfg is not None:
        out["memory_gb"]["M-step (one process)"] = memory_gb(arch, m_cfg.batch_size * m_cfg.max_length, m_lora,
                                                             full_finetune=m_cfg.full_finetune)
    return out
