"""ARC test-time training and its evaluation: the training pairs a configuration asks for (leave-one-out
and leave-two-out tasks under the chosen augmenters), and pass@2 scoring under invertible test-time
augmentations with a majority vote (REFERENCE 1.2)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from seal.domains.arc.augment import IDENTITY, TTA, Grid, Transform, augmenters, fits, random_colours
from seal.domains.arc.config import ARCEvalConfig, TTTConfig
from seal.domains.arc.data import ARCTask, output_text, task_prompt
from seal.domains.arc.self_edit import ARCEdit

# ------------------------------------------------------------------------------------ training data

def _subtasks(task: ARCTask, cfg: TTTConfig) -> list[tuple[list[tuple[Grid, Grid]], Grid, Grid]]:
    """(demonstrations, pseudo-test input, its output) from the task's own demonstrations."""
    demos, n, out = task.train, len(task.train), []
    if cfg.leave_one_out and n >= 2:
        out += [([d for j, d in enumerate(demos) if j != i], *demos[i]) for i in range(n)]
    if cfg.leave_two_out and n >= 3:
        out += [([d for m, d in enumerate(demos) if m not in (i, j)], *demos[i])
                for i in range(n) for j in range(n) if j != i]
    return out


def _mapped(sub, t: Transform):
    demos, x, y = sub
    return [(t.forward(i), t.forward(o)) for i, o in demos], t.forward(x), t.forward(y)


def ttt_examples(task: ARCTask, edit: ARCEdit, cfg: TTTConfig, seed: int) -> list[tuple[str, str]]:
    """The (prompt, output) pairs a configuration trains on; seeded (translations, permutations, cap)."""
    rng = np.random.default_rng(seed)
    base = _subtasks(task, cfg)
    transforms = augmenters(edit.augment_choice(), rng)
    subs = list(base)
    for t in transforms:
        subs += [_mapped(s, t) for s in base]
    subs = [s for s in subs if all(fits(g, cfg.max_side) for d in s[0] for g in d) and fits(s[1], cfg.max_side)
            and fits(s[2], cfg.max_side)]
    if transforms and cfg.permute:
        permuted = []
        for s in subs:
            demos, x, y = _mapped(s, random_colours(rng))
            permuted.append(([demos[i] for i in rng.permutation(len(demos))], x, y))
        subs += permuted
    pairs = list(dict.fromkeys((task_prompt(d, x), output_text(y)) for d, x, y in subs))  # dedupe, keep order
    order = rng.permutation(len(pairs))[: cfg.max_examples]
    return [pairs[i] for i in sorted(order)]


# --------------------------------------------------------------------------------------- evaluation

def eval_prompts(task: ARCTask, test_index: int, cfg: ARCEvalConfig) -> list[tuple[str, Transform]]:
    """Prompts for one test input and the transform whose inverse maps each answer back."""
    n = len(task.train)
    subsets = [list(range(n))]
    if cfg.leave_one_out and n >= 3:
        subsets += [[j for j in range(n) if j != i] for i in range(n)]
    out = []
    for t in (IDENTITY, *TTA[: cfg.tta]):
        demos = [(t.forward(i), t.forward(o)) for i, o in task.train]
        x = t.forward(task.test[test_index])
        for sub in subsets:
            orders = [sub, sub[::-1]][: cfg.orderings] if len(sub) > 1 else [sub]
            out += [(task_prompt([demos[j] for j in order], x), t) for order in orders]
    return out


def vote(candidates: list[Grid | None], attempts: int = 2) -> list[Grid]:
    """The `attempts` most frequent valid answers; ties go to the answer seen first."""
    counts = Counter(tuple(map(tuple, g)) for g in candidates if g is not None)
    first = {}
    for g in candidates:
        if g is not None:
            first.setdefault(tuple(map(tuple, g)), len(first))
    ranked = sorted(counts, key=lambda k: (-counts[k], first[k]))
    return [[list(row) for row in k] for k in ranked[:attempts]]


def solved(attempts: list[list[Grid]], solutions: list[Grid]) -> bool:
    """pass@k: every test input's solution is among its attempts."""
    return len(attempts) == len(solutions) and all(sol in att for att, sol in zip(attempts, solutions))


def inverse_or_none(t: Transform, g: Grid | None) -> Grid | None:
    if g is None:
        return None
    try:
        return t.inverse(g)
    except (ValueError, IndexError):  # an answer whose shape the inverse cannot take
        return None


