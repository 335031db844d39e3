"""`seal experiment=<name> plan=true`: what a run will do, checked on a laptop before a GPU hour is spent.

It loads no weights and trains nothing. It writes `plan.json` and `plan.md` into the run folder:
the contexts of every round (uids, titles), the rendered self-edit prompt and the exact M-step
training example as tokens with its loss mask, the inner loop's LoRA targets and trainable
parameters, optimizer steps per inner loop, the M-step's effective batch and step count for the
configured launcher and process count, the grader, inner loops per round, and memory and time
per GPU from FLOPs (`seal.plan.estimates`). Each recipe's plan is built in `seal.plan.recipes` from the
sections in `seal.plan.sections`; this module picks the builder and writes the files.

    seal experiment=ki_restem plan=true data.path=<squad train (SEAL JSON)> eval_data.path=<squad_val.json>
    seal experiment=arc_restem plan=true
"""

from __future__ import annotations

import json
from pathlib import Path

from seal.plan.recipes import BUILDERS, generic
from seal.plan.sections import PlanConfig


def write(out: Path, plan: dict) -> None:
    from seal.plan.report import render

    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan, indent=2, default=str))
    (out / "plan.md").write_text(render(plan))


def make_plan(typed, recipe: str, out: Path, plan_cfg: PlanConfig | None = None, raw: dict | None = None) -> dict:
    """Build and write the plan of a recipe's typed config (and the resolved config it came from,
    `plan_config.yaml`, when given); returns it."""
    plan_cfg = plan_cfg or PlanConfig()
    builder = BUILDERS.get(recipe, generic)
    plan = {"recipe": recipe, **builder(typed, plan_cfg)}
    write(out, plan)
    if raw is not None:
        import yaml

        (out / "plan_config.yaml").write_text(yaml.safe_dump({k: v for k, v in raw.items() if k != "hydra"},
                                                             sort_keys=False))
    return plan
