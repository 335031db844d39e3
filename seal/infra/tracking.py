"""wandb logging, offline by default, with its run id kept in the run folder for resume.

`mode=disabled` (used by tests) skips importing wandb at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "seal"
    entity: str | None = None


class Tracker:
    def __init__(self, cfg: WandbConfig, run_dir, config: dict, name: str):
        self.run = None
        if cfg.mode == "disabled":
            return
        import wandb

        run_id = run_dir.meta.get("wandb_id") or uuid.uuid4().hex[:8]
        run_dir.meta["wandb_id"] = run_id
        run_dir.save_meta()
        self.run = wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, dir=str(run_dir.path),
                              id=run_id, resume="allow", name=name, config=config)

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
