"""The `seal` command: `seal experiment=<name> [overrides]` runs one experiment into a run folder.

Hydra composes `configs/`; this module turns the result into the recipe's typed config, opens the
run folder (new, or the one named by `resume=`), and calls the recipe. Errors in configs or data are
printed as one clear line, not a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from seal.config import ConfigError, plain, to_dataclass

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
log = logging.getLogger("seal")

OmegaConf.register_new_resolver("seal_run_dir", lambda resume, default: resume or default, replace=True)


def recipes():
    """recipe name -> (config dataclass, run function); imported lazily to keep start-up fast."""
    from seal import arc, ki_continual, ki_cpt, ki_decoding, ki_eval, restem, tool_use

    return {"ki_eval": (ki_eval.KIEvalConfig, ki_eval.run), "restem": (restem.ReSTEMConfig, restem.run),
            "ki_cpt": (ki_cpt.KICPTConfig, ki_cpt.run),
            "ki_continual": (ki_continual.KIContinualConfig, ki_continual.run),
            "ki_decoding": (ki_decoding.KIDecodingConfig, ki_decoding.run),
            "arc_restem": (arc.ARCReSTEMConfig, arc.run), "tool_use": (tool_use.ToolUseConfig, tool_use.run)}


def recipe_config(raw: dict):
    """(typed config, run function) of the recipe a composed plain config names."""
    recipe = raw["experiment"].get("recipe")
    table = recipes()
    if recipe not in table:
        raise ConfigError(f"experiment.recipe: unknown recipe '{recipe}' (choose one of {', '.join(sorted(table))})")
    cls, fn = table[recipe]
    body = {k: v for k, v in raw.items() if k not in ("experiment", "resume", "force_resume", "hydra", "plan")}
    return to_dataclass(cls, body, "root"), fn


def run_experiment(cfg: DictConfig, run_path: Path) -> dict:
    from seal.run_dir import RunDir

    raw = plain(cfg)
    raw.pop("hydra", None)
    typed, fn = recipe_config(raw)
    if raw.get("plan"):
        from seal.plan import make_plan

        make_plan(typed, raw["experiment"]["recipe"], run_path, raw=raw)
        log.info("plan: %s", run_path / "plan.md")
        return {}
    rd = RunDir(run_path, raw, resume=bool(raw.get("resume")), force=bool(raw.get("force_resume")))
    log.info("run folder: %s", rd.path)
    results = fn(typed, rd)
    log.info("done: %s", rd.path / "report.md")
    return results


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from seal.arc_self_edit import EditRejected
    from seal.data import DataError
    from seal.engine_worker import BackendError
    from seal.graders import GraderError
    from seal.run_dir import ResumeError
    from seal.self_edits import SelfEditError

    run_path = Path(HydraConfig.get().runtime.output_dir)
    try:
        run_experiment(cfg, run_path)
    except (ConfigError, DataError, ResumeError, SelfEditError, BackendError, EditRejected, GraderError) as e:
        print(f"seal: error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
