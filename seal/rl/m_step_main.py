"""One M-step in a launched process: `python -m seal.rl.m_step_main <job.json>` under torchrun or
`accelerate launch` (`m_step.launcher`). The driver (`seal.rl.m_step._launch_m_step`) writes the job:
the policy by path, the pairs, the model and M-step settings, the seed and where the new policy
goes. Every process trains its shard; the main process writes the policy folder and `stats.json`.

These processes open no wandb run (the driver starts them with `WANDB_MODE=disabled`): the run is
the driver's, and a second process logging under its id would write a second, conflicting copy of
it. The per-step losses come back in `stats.json` and the driver logs them into its run against
`m_step/train/step` when the job ends. The processes' output is kept in the run folder
(`m_step_round<r>.log`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seal.infra.config import to_dataclass
from seal.models.loading import ModelConfig


def main() -> None:
    from seal.rl.m_step import MStepConfig, m_step

    job = json.loads(Path(sys.argv[1]).read_text())
    stats = m_step(job["policy"], to_dataclass(ModelConfig, job["model"], "job.model"), job["pairs"],
                   to_dataclass(MStepConfig, job["m_step"], "job.m_step"), job["seed"], Path(job["out"]))
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        Path(job["stats"]).write_text(json.dumps(stats))


if __name__ == "__main__":
    main()
