"""The ARC self-edit: a JSON object in which the policy model chooses its test-time-training settings.

The model writes something like
    {"geometric": true, "size": false, "chain": false, "repeat": true, "loss": "output_only", "lr": 1e-4,
     "epochs": 3}
possibly wrapped in prose or ```json fences. `parse_edit` finds the object and validates it strictly
(exact keys, JSON types, ranges); anything unusable raises `EditRejected` whose message is recorded as
the reason, so a bad self-edit is scored as a failure rather than silently repaired. Never uses eval.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from seal.domains.arc.augment import Grid
from seal.domains.arc.data import ARCTask

KEYS = ("geometric", "size", "chain", "repeat", "loss", "lr", "epochs")
FLAGS = ("geometric", "size", "chain", "repeat")
LOSSES = ("all_tokens", "output_only")


class EditRejected(ValueError):
    """A self-edit that cannot be used; str(e) is the recorded reason."""


@dataclass(frozen=True)
class EditLimits:
    lr_min: float = 1e-6
    lr_max: float = 1e-2
    epochs_min: int = 1
    epochs_max: int = 20


@dataclass(frozen=True)
class ARCEdit:
    geometric: bool
    size: bool
    chain: bool
    repeat: bool
    loss: str  # "all_tokens" | "output_only"
    lr: float
    epochs: int

    def augment_choice(self) -> dict[str, bool]:
        return {k: getattr(self, k) for k in FLAGS}

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in KEYS})


def extract_json(text: str) -> str:
    """The first balanced top-level {...} in text; braces inside JSON strings are skipped."""
    start = text.find("{")
    if start < 0:
        raise EditRejected("no JSON object in the output")
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise EditRejected("the JSON object is not closed (the output ends inside it)")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise EditRejected(f"duplicate keys: {', '.join(dups)}")
    return dict(pairs)


def _loads(s: str) -> object:
    return json.loads(s, object_pairs_hook=_no_duplicates)


def _got(v: object) -> str:
    return f"got {type(v).__name__} {v!r}"


def parse_edit(text: str, limits: EditLimits = EditLimits()) -> ARCEdit:
    """Parse and validate the model's self-edit; raises EditRejected naming the field and value."""
    try:
        obj = _loads(text.strip())  # the whole output is JSON (possibly not an object)
    except json.JSONDecodeError:
        try:
            obj = _loads(extract_json(text))
        except json.JSONDecodeError as e:
            raise EditRejected(f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise EditRejected(f"expected a JSON object, got {type(obj).__name__}")

    missing = sorted(set(KEYS) - set(obj))
    if missing:
        raise EditRejected(f"missing keys: {', '.join(missing)}")
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        raise EditRejected(f"unknown keys: {', '.join(unknown)}")

    for k in FLAGS:
        if not isinstance(obj[k], bool):
            raise EditRejected(f"{k}: expected true or false, {_got(obj[k])}")

    loss = obj["loss"]
    if not isinstance(loss, str) or loss not in LOSSES:
        raise EditRejected(f"loss: {loss!r} is not one of {', '.join(LOSSES)}")

    lr = obj["lr"]
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise EditRejected(f"lr: expected a number, {_got(lr)}")
    if not math.isfinite(lr):
        raise EditRejected(f"lr: {lr!r} is not finite")
    if not limits.lr_min <= lr <= limits.lr_max:
        raise EditRejected(f"lr: {lr!r} is outside [{limits.lr_min}, {limits.lr_max}]")

    epochs = obj["epochs"]
    if not isinstance(epochs, int) or isinstance(epochs, bool):
        raise EditRejected(f"epochs: expected an integer, {_got(epochs)}")
    if not limits.epochs_min <= epochs <= limits.epochs_max:
        raise EditRejected(f"epochs: {epochs} is outside [{limits.epochs_min}, {limits.epochs_max}]")

    return ARCEdit(**{k: obj[k] for k in FLAGS}, loss=loss, lr=float(lr), epochs=epochs)


def check_budget(n_examples: int, batch_size: int, epochs: int, max_steps: int) -> int:
    """Optimiser steps the edit asks for: ceil(n_examples / batch_size) * epochs, if within max_steps."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_examples < 1:
        raise EditRejected(f"no training examples (n_examples={n_examples})")
    steps = math.ceil(n_examples / batch_size) * epochs
    if steps > max_steps:
        raise EditRejected(
            f"over budget: {steps} steps ({n_examples} examples, batch_size={batch_size}, epochs={epochs})"
            f" > max_steps={max_steps}"
        )
    return steps


# ------------------------------------------------------------------------------ the self-edit prompt

POLICY_PROMPT = (
    "Here are the solved examples of a grid puzzle:\n\n{demos}"
    "Before solving it you will fine-tune yourself on augmented copies of these examples. Choose the "
    "training setup as one JSON object with exactly these keys:\n"
    '- "geometric": true or false (rotations, flips, reflections, transpose, shifts)\n'
    '- "size": true or false (grids scaled up 2x)\n'
    '- "chain": true or false (a geometric change followed by scaling)\n'
    '- "repeat": true or false (grids tiled twice)\n'
    '- "loss": "all_tokens" or "output_only"\n'
    '- "lr": learning rate, a number from {lr_min:g} to {lr_max:g}\n'
    '- "epochs": an integer from {ep_min} to {ep_max}\n'
    'The format, with values you should choose for this puzzle: {{"geometric": false, "size": true, '
    '"chain": false, "repeat": true, "loss": "all_tokens", "lr": 0.0003, "epochs": 4}}\n'
    "Reply with the JSON object only."
)


def policy_prompt(task: ARCTask, limits: EditLimits) -> str:
    demos = "".join(f"Input:\n{_txt(i)}\nOutput:\n{_txt(o)}\n\n" for i, o in task.train)
    return POLICY_PROMPT.format(demos=demos, lr_min=limits.lr_min, lr_max=limits.lr_max, ep_min=limits.epochs_min,
                                ep_max=limits.epochs_max)


def _txt(g: Grid) -> str:
    return "\n".join("".join(map(str, r)) for r in g)
