"""Range checks for every numeric value of a recipe's typed config, run before any run folder is written.

`CONSTRAINTS` maps a dotted key of the typed config (`*` stands for any name in a dict of sections) to
the values it allows, in this notation:

    ">= 1", "> 0"            a lower bound
    "[0, 1)", "(0, 1]"       an interval: brackets include the bound, parentheses exclude it
    "[1, self_edit.max_k]"   a bound may be another key of the same config
    "any"                    anything, nan and inf included

A list of numbers is checked element by element against its key's rule. Keys a recipe lacks are
skipped. Values the table does not name still meet two generic rules: a float must be finite, and
an int named like a count of things that must exist (`GENERIC_AT_LEAST_ONE`) must be at least 1.
`check_ranges` also checks the names a config gives against their tables (`seal.infra.name_checks`), so one
message lists everything wrong before the run starts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from seal.infra.config import ConfigError
from seal.infra.name_checks import name_problems

CONSTRAINTS: dict[str, str] = {
    "seed": ">= 0",
    # model (seal.models.loading)
    "model.max_context": ">= 8",
    "model.threads": ">= 1",
    # passages (seal.data.sources): the training contexts and, for restem, the held-out ones
    "data.num_passages": ">= 1",
    "data.limit": ">= 1",
    "data.offset": ">= 0",
    "data.seed": ">= 0",
    "eval_data.num_passages": ">= 1",
    "eval_data.limit": ">= 1",
    "eval_data.offset": ">= 0",
    "eval_data.seed": ">= 0",
    # self-edit sampling (seal.domains.knowledge.self_edit)
    "self_edit.k": "[1, self_edit.max_k]",
    "self_edit.max_k": ">= 1",
    "self_edit.temperature": ">= 0",
    "self_edit.top_p": "(0, 1]",
    "self_edit.max_new_tokens": ">= 1",
    "self_edit.batch_size": ">= 1",
    "self_edit.sample_chunk": ">= 0",
    "self_edit.max_segments": ">= 1",
    # training directives of format implications-hp (seal.domains.knowledge.directive)
    "self_edit.directive.lr_values": "> 0",
    "self_edit.directive.epochs_min": ">= 1",
    "self_edit.directive.epochs_max": ">= self_edit.directive.epochs_min",
    "self_edit.directive.default_lr": "> 0",
    "self_edit.directive.default_epochs": ">= 1",
    "self_edit.generators.max_entities": ">= 2",
    "self_edit.generators.max_calls": ">= 1",
    "self_edit.generators.triples": "[0, self_edit.generators.max_calls]",
    "self_edit.generators.strategies": ">= 1",
    "self_edit.generators.token_budget": ">= 0",
    # the inner loop (seal.inner_loop.trainer, seal.inner_loop.schedules)
    "inner_loop.lora_r": ">= 1",
    "inner_loop.lora_alpha": "> 0",
    "inner_loop.lora_dropout": "[0, 1)",
    "inner_loop.lr": "> 0",
    "inner_loop.epochs": ">= 1",
    "inner_loop.batch_size": ">= 1",
    "inner_loop.grad_accum": ">= 1",
    "inner_loop.max_grad_norm": "> 0",
    "inner_loop.weight_decay": ">= 0",
    "inner_loop.warmup_ratio": "[0, 1)",
    "inner_loop.min_lr_ratio": "[0, 1]",
    "inner_loop.const_lr_ratio": "[0, 1]",
    "inner_loop.cooldown_ratio": "[0, 1)",
    "inner_loop.anneal_ratio": "[0, 1)",
    "inner_loop.max_seq_len": ">= 8",
    "inner_loop.adapters_per_batch": ">= 0",
    "inner_loop.memory_budget_gb": "> 0",
    "inner_loop.max_adapters": ">= 1",
    "inner_loop.token_budget": ">= 8",
    "inner_loop.forward_overhead_tokens": ">= 0",
    # answering the questions (seal.eval.qa) and grading them (seal.eval.graders)
    "qa_eval.max_new_tokens": ">= 1",
    "qa_eval.batch_size": ">= 1",
    "grader.max_tokens": ">= 1",
    "grader.concurrency": ">= 1",
    "grader.timeout_s": "> 0",
    "grader.max_retries": ">= 0",
    "grader.backoff_s": ">= 0",
    "grader.backoff_max_s": ">= 0",
    # generation backend (seal.generation.backends) and where inner loops run (seal.infra.runtime)
    "backend.gpu_memory_utilization": "(0, 1)",
    "backend.max_loras": ">= 0",
    "backend.max_model_len": ">= 8",
    "backend.start_timeout_s": "> 0",
    "runtime.workers": ">= 0",
    "runtime.cpus_per_worker": "> 0",
    "runtime.gpus_per_worker": ">= 0",
    "runtime.torch_threads": ">= 0",
    "runtime.max_retries": ">= 0",
    # the outer loop (seal.rl.outer_loop), selection and the M-step (seal.rl.m_step)
    "restem.rounds": ">= 0",
    "restem.contexts_per_round": ">= 1",
    "restem.seeds_per_edit": ">= 1",
    "restem.eval_passages": ">= 1",
    "restem.eval_samples": ">= 1",
    "self_questions.max_questions": ">= 1",  # the self_questions reward (seal.eval.self_questions)
    "self_questions.max_new_tokens": ">= 1",
    "self_questions.temperature": ">= 0",
    "selection.fraction": "(0, 1]",
    "m_step.lora_r": ">= 1",
    "m_step.lora_alpha": "> 0",
    "m_step.lora_dropout": "[0, 1)",
    "m_step.lr": "> 0",
    "m_step.epochs": ">= 1",
    "m_step.effective_batch": ">= 1",
    "m_step.batch_size": ">= 1",
    "m_step.warmup_ratio": "[0, 1)",
    "m_step.max_length": ">= 8",
    "m_step.nproc": ">= 1",
    # ARC (seal.domains.arc.domain, seal.domains.arc.data, seal.domains.arc.self_edit)
    "arc.k": "[1, arc.max_k]",
    "arc.max_k": ">= 1",
    "arc.temperature": ">= 0",
    "arc.top_p": "(0, 1]",
    "arc.max_new_tokens": ">= 1",
    "arc.sample_batch_size": ">= 1",
    "arc.sample_chunk": ">= 0",
    "arc.max_attempts": ">= 1",
    "arc.limits.lr_min": "> 0",
    "arc.limits.lr_max": "> 0",
    "arc.limits.epochs_min": ">= 1",
    "arc.limits.epochs_max": ">= 1",
    "arc.ttt.max_examples": ">= 1",
    "arc.ttt.max_side": ">= 1",
    "arc.ttt.max_steps": ">= 1",
    "arc.eval.tta": "[0, 5]",
    "arc.eval.orderings": "[1, 2]",
    "arc.eval.attempts": ">= 1",
    "arc.eval.max_new_tokens": ">= 1",
    "arc.eval.batch_size": ">= 1",
    "arc_data.limit": ">= 1",
    "arc_eval_data.limit": ">= 1",
    # continued pretraining (seal.recipes.ki_cpt)
    "cpt.full_lr": "> 0",
    "cpt.full_epochs": ">= 1",
    "cpt.full_batch_size": ">= 1",
    "cpt.full_warmup_ratio": "[0, 1)",
    # sequential self-edits (seal.recipes.ki_continual)
    "continual.sequences": ">= 1",
    "continual.length": ">= 1",
    "continual.probe_docs": ">= 1",
    "continual.variants.*.replay_fraction": "[0, 1)",
    # decoding-time adaptation (seal.recipes.ki_decoding, seal.decoding.co_llm)
    "decoding.set_size": ">= 3",
    "decoding.head_passages": ">= 1",
    "decoding.val_passages": ">= 1",
    "decoding.co_llm.init_epochs": ">= 0",  # 0: skip that phase
    "decoding.co_llm.epochs": ">= 0",
    "decoding.co_llm.init_lr": "> 0",
    "decoding.co_llm.lr": "> 0",
    "decoding.co_llm.pos_weight": "> 0",
    "decoding.co_llm.warmup": "[0, 1)",
    "decoding.co_llm.batch_size": ">= 1",
    "decoding.co_llm.target_rate": "[0, 1]",
    "decoding.co_llm.sweep_rates": "[0, 1]",
    # learning a tool API while chatting (seal.recipes.tool_use, seal.chat.session)
    "tools.counts": ">= 1",
    "tools.test": ">= 1",
    "tools.probes": ">= 1",
    "tools.max_new_tokens": ">= 1",
    "tools.batch_size": ">= 1",
    "chat.max_new_tokens": ">= 1",
    "chat.temperature": ">= 0",
    "chat.history_turns": ">= 0",
    "chat.self_edit_max_chars": ">= 1",
    "chat.probes": ">= 1",
    "chat.replay_fraction": "[0, 1)",
    "chat.moderation.min_chars": ">= 0",
    "chat.moderation.max_chars": ">= 1",
    "chat.moderation.max_control_fraction": "[0, 1]",
    "chat.gate.general_docs": ">= 1",
}

# ints not in the table whose last name part matches: sizes, epoch and step counts, k, LoRA ranks
GENERIC_AT_LEAST_ONE = re.compile(r"(_size|epochs|steps|_r)$|^k$")


@dataclass(frozen=True)
class Rule:
    lo: float | str | None = None  # a number, a dotted key of the config, or None: unbounded
    hi: float | str | None = None
    lo_open: bool = False
    hi_open: bool = False
    finite: bool = True

    def describe(self, cfg: Any, value: float) -> str:
        """What a value of this kind must be: "an integer >= 1", "a finite number in (0, 1]"."""
        kind = "an integer" if isinstance(value, int) else "a finite number"
        if self.hi is not None:
            return (f"{kind} in {'(' if self.lo_open else '['}{_show(self.lo, cfg)}, {_show(self.hi, cfg)}"
                    f"{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {_show(self.lo, cfg)}"
        return kind

    def allows(self, value: float, cfg: Any) -> bool:
        if not self.finite:
            return True
        if not math.isfinite(value):
            return False
        lo, hi = _bound(self.lo, cfg), _bound(self.hi, cfg)
        above = lo is None or (value > lo if self.lo_open else value >= lo)
        below = hi is None or (value < hi if self.hi_open else value <= hi)
        return above and below


FINITE = Rule()
AT_LEAST_ONE = Rule(lo=1)
_ONE_SIDED = re.compile(r"^(>=|>)\s*(\S+)$")
_INTERVAL = re.compile(r"^([\[(])\s*([^,\s]+)\s*,\s*([^\s\])]+)\s*([\])])$")


def parse_rule(text: str) -> Rule:
    if text == "any":
        return Rule(finite=False)
    if m := _ONE_SIDED.match(text):
        return Rule(lo=_number_or_key(m[2]), lo_open=m[1] == ">")
    if m := _INTERVAL.match(text):
        return Rule(lo=_number_or_key(m[2]), hi=_number_or_key(m[3]), lo_open=m[1] == "(", hi_open=m[4] == ")")
    raise ValueError(f"config_checks: cannot read the rule '{text}'")


def _number_or_key(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _lookup(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _bound(b: float | str | None, cfg: Any) -> float | None:
    return _lookup(cfg, b) if isinstance(b, str) else b


def _show(b: float | str, cfg: Any) -> str:
    if isinstance(b, str):
        return f"{b}={_lookup(cfg, b)}"
    return str(int(b)) if b == int(b) else str(b)


RULES: dict[str, Rule] = {key: parse_rule(text) for key, text in CONSTRAINTS.items()}


def numeric_values(node: Any, prefix: str = "", pattern: str = "") -> Iterator[tuple[str, str, int | float]]:
    """(key as written, key as in the table, value) for every number in a typed config: fields of nested
    sections, values of dicts of sections (key `*` in the table) and elements of lists (`key[i]`)."""
    for f in dataclasses.fields(node):
        yield from _values(getattr(node, f.name), prefix + f.name, pattern + f.name)


def _values(value: Any, key: str, pattern: str) -> Iterator[tuple[str, str, int | float]]:
    if dataclasses.is_dataclass(value):
        yield from numeric_values(value, key + ".", pattern + ".")
    elif isinstance(value, dict):
        for name, v in value.items():
            yield from _values(v, f"{key}.{name}", pattern + ".*")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if _is_number(v):
                yield f"{key}[{i}]", pattern, v
    elif _is_number(value):
        yield key, pattern, value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def rule_for(pattern: str, value: float) -> Rule:
    if pattern in RULES:
        return RULES[pattern]
    if isinstance(value, int) and GENERIC_AT_LEAST_ONE.search(pattern.rsplit(".", 1)[-1]):
        return AT_LEAST_ONE
    return FINITE


def problems(cfg: Any) -> list[str]:
    """One line per value out of its range, naming the key, the value and what is allowed."""
    out = []
    for key, pattern, value in numeric_values(cfg):
        rule = rule_for(pattern, value)
        if not rule.allows(value, cfg):
            out.append(f"{key}={value!r} (must be {rule.describe(cfg, value)}{_hint(rule)})")
    return out


def _hint(rule: Rule) -> str:
    """How to go past a limit that is itself a config key (`self_edit.k` <= `self_edit.max_k`)."""
    return f"; raise {rule.hi} if you really mean it" if isinstance(rule.hi, str) else ""


def check_ranges(cfg: Any) -> None:
    """Raise one ConfigError listing every value of `cfg` (a recipe's typed config) that it cannot run with:
    each number out of its range, and each name not in the table it names or schedule that cannot be built
    (`seal.infra.name_checks`)."""
    found, named = problems(cfg), name_problems(cfg)
    what = "out of range" if not named else "not allowed" if not found else "out of range or not allowed"
    if len(found) + len(named) == 1:
        raise ConfigError(f"config value out of range: {found[0]}" if found else named[0])
    if found or named:
        raise ConfigError(f"{len(found) + len(named)} config values {what}: " + "; ".join(found + named))
