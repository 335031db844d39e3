"""The `seal` command: `seal experiment=<name> [overrides]` runs one experiment into a run folder.

Hydra composes `seal/configs/` (shipped in the package); this module turns the result into the recipe's typed config, checks every
value's range (`seal.infra.config_checks`), opens the run folder (new, or the one named by `resume=`), and
calls the recipe. Errors in configs or data, Hydra's own included, are printed as one clear line, not
a traceback, and a refused run leaves no run folder behind.

`seal -m key=a,b ...` sweeps (Hydra multirun, `seal.infra.sweep`): a failing job is recorded in its folder and
the sweep goes on; each job returns its headline metric to the sweeper. `seal compare <folders>` tables and
plots finished runs side by side (`seal.infra.compare`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seal.infra import sweep
from seal.infra.config import ConfigError, plain, to_dataclass
from seal.infra.config_checks import check_ranges
from seal.infra.hydra_config import CONFIG_DIR, one_line
from seal.infra.schemas import register as register_schemas

log = logging.getLogger("seal")

OmegaConf.register_new_resolver("seal_run_dir", lambda resume, default: resume or default, replace=True)


def recipes():
    """recipe name -> (config dataclass, run function); imported lazily to keep start-up fast. A new
    recipe is one file in `seal/recipes/` and one entry here (`experiment.recipe: <name>`)."""
    from seal.recipes import arc_restem, ki_continual, ki_cpt, ki_decoding, ki_eval, restem, tool_use

    return {"ki_eval": (ki_eval.KIEvalConfig, ki_eval.run), "restem": (restem.ReSTEMConfig, restem.run),
            "ki_cpt": (ki_cpt.KICPTConfig, ki_cpt.run),
            "ki_continual": (ki_continual.KIContinualConfig, ki_continual.run),
            "ki_decoding": (ki_decoding.KIDecodingConfig, ki_decoding.run),
            "arc_restem": (arc_restem.ARCReSTEMConfig, arc_restem.run),
            "tool_use": (tool_use.ToolUseConfig, tool_use.run)}


# Hydra composes against each recipe's typed schema (`schema/<recipe>`, seal.infra.schemas): a wrong type or an
# unknown key fails before any run folder exists, and `--cfg job` shows every key that takes effect
register_schemas({name: cls for name, (cls, _) in recipes().items()}, recipes=True)


def recipe_config(raw: dict):
    """(typed config, run function) of the recipe a composed plain config names."""
    recipe = raw["experiment"].get("recipe")
    table = recipes()
    if recipe not in table:
        raise ConfigError(f"experiment.recipe: unknown recipe '{recipe}' (choose one of {', '.join(sorted(table))})")
    cls, fn = table[recipe]
    body = {k: v for k, v in raw.items() if k not in ("experiment", "hydra", *RUN_KEYS)}
    return to_dataclass(cls, body, "root"), fn


RUN_KEYS = ("resume", "force_resume", "resume_inputs", "plan", "sweep_metric")  # about running, not the experiment
NOT_RECORDED = ("sweep_metric",)  # how a sweep reads the run's results: no part of the run, nor of its fingerprint


def effective_config(raw: dict, typed) -> dict:
    """The config a run folder records: every value that takes effect (the typed config, defaults
    included, since the YAML files hold only overrides), after the experiment's name and recipe."""
    body = json.loads(json.dumps(dataclasses.asdict(typed), default=str))
    return {"experiment": raw["experiment"], **body, **_run_keys(raw)}


def _run_keys(config: dict) -> dict:
    return {k: config[k] for k in RUN_KEYS if k in config and k not in NOT_RECORDED}


def recorded_config(run_path: Path, config: dict, typed) -> dict:
    """On resume, the config to hand the run folder: its recorded config.yaml with only the values that
    really changed replaced. A run started before run folders recorded every effective value wrote the
    composed YAML; keys it left to their defaults are not changes, so its fingerprint still matches when
    nothing changed, and a real change is named on its own in the refusal."""
    path = run_path / "config.yaml"
    if not config.get("resume") or not path.is_file():
        return config
    try:
        stored = yaml.safe_load(path.read_text())
        old, _ = recipe_config(stored)
    except (ConfigError, OmegaConfBaseException, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return config

    def patch(into: dict, was: dict, now: dict) -> None:
        for key, value in now.items():
            if was.get(key) == value:
                continue
            if isinstance(value, dict) and isinstance(was.get(key), dict) and isinstance(into.get(key), dict):
                patch(into[key], was[key], value)
            else:
                into[key] = value

    merged = copy.deepcopy(stored)
    patch(merged, json.loads(json.dumps(dataclasses.asdict(old), default=str)),
          json.loads(json.dumps(dataclasses.asdict(typed), default=str)))
    return {**merged, "experiment": config["experiment"], **_run_keys(config)}


def resolved(cfg: DictConfig) -> dict:
    """The composed config as plain Python; a broken interpolation (`lr=${oops}`) is a ConfigError naming the key."""
    try:
        return plain(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError((f"{key}: " if key else "") + str(e).splitlines()[0]) from None


def run_experiment(cfg: DictConfig, run_path: Path, discard_refused: bool = False) -> dict:
    """Run the experiment `cfg` into `run_path`. With `discard_refused` (the folder is this process's
    new one), a user error before the first record removes what the run wrote there."""
    from seal.infra.run_dir import RunDir

    raw = resolved(cfg)
    raw.pop("hydra", None)
    typed, fn = recipe_config(raw)
    check_ranges(typed)  # before anything is written: a refused config leaves no trace
    if raw.get("plan"):
        from seal.plan.builder import make_plan

        make_plan(typed, raw["experiment"]["recipe"], run_path, raw=raw)
        log.info("plan: %s", run_path / "plan.md")
        return {}
    config = recorded_config(Path(run_path), effective_config(raw, typed), typed)
    with RunDir(run_path, config, resume=bool(raw.get("resume")), force=bool(raw.get("force_resume"))) as rd:
        log.info("run folder: %s", rd.path)
        try:
            results = fn(typed, rd)
        except user_errors():
            if discard_refused:
                rd.discard()
            raise
    log.info("done: %s", rd.path / "report.md")
    return results


def user_errors() -> tuple[type[Exception], ...]:
    """The errors that mean "the config, data or folder is wrong": one line and exit 2, never a traceback."""
    from seal.data.sources import DataError
    from seal.domains.arc.self_edit import EditRejected
    from seal.domains.knowledge.self_edit import SelfEditError
    from seal.eval.graders import GraderError
    from seal.generation.errors import BackendError
    from seal.infra.run_folder import ResumeError
    from seal.inner_loop.trainer import InnerLoopError

    return ConfigError, DataError, ResumeError, SelfEditError, BackendError, EditRejected, GraderError, InnerLoopError


# What Hydra puts in a new run folder before seal's code runs: a refused run whose folder holds nothing
# else removes it again.
HYDRA_FILES = {".hydra": {"config.yaml", "hydra.yaml", "overrides.yaml"}, "cli.log": None}

# Hydra prints its own errors (override syntax, unknown keys, missing config groups) over several lines
# and exits 1; with this variable set to 1 it raises them instead, and `main` prints them as one line.
HYDRA_RAISES = "HYDRA_FULL_ERROR"
_hydra_raises_set_here = False


def only_hydra_files(path: Path, also: frozenset[str] = frozenset()) -> bool:
    """Whether `path` is a folder holding nothing but what Hydra writes there (and files named in `also`)."""
    if not path.is_dir() or path.is_symlink():
        return False
    return all(_hydra_file(entry) or entry.name in also and _plain_file(entry) for entry in path.iterdir())


def _hydra_file(entry: Path) -> bool:
    if entry.name not in HYDRA_FILES or entry.is_symlink():
        return False
    inside = HYDRA_FILES[entry.name]
    if inside is None:
        return entry.is_file()
    return entry.is_dir() and all(f.name in inside and _plain_file(f) for f in entry.iterdir())


def _plain_file(entry: Path) -> bool:
    return entry.is_file() and not entry.is_symlink()


def new_run_folder(path: Path, resume) -> bool:
    """The folder is this process's own: Hydra has just made it (it holds only Hydra's files, an empty
    log) and it is not a run being resumed."""
    return not resume and only_hydra_files(path) and (path / "cli.log").stat().st_size == 0


def remove_stub(path: Path) -> None:
    """Remove a refused run's folder, if it still holds nothing but Hydra's files. Only those names are
    removed, and a folder is removed only once empty. A folder with seal's marker or lock is never
    touched here: another process may hold it (a refused run of this process removes its own files
    first, through `RunDir.discard`, while it still holds the lock)."""
    if not only_hydra_files(path):
        return
    _close_logs_in(path)
    try:
        if (path / ".hydra").is_dir():
            for name in HYDRA_FILES[".hydra"]:
                (path / ".hydra" / name).unlink(missing_ok=True)
            (path / ".hydra").rmdir()
        (path / "cli.log").unlink(missing_ok=True)
        path.rmdir()
    except OSError:  # best effort: a stub left behind is untidy, not wrong
        pass


def _close_logs_in(path: Path) -> None:
    """Detach the log files Hydra opened in `path`: a handler left on a removed file would fail the
    next message logged in this process (a later job of a sweep, or a caller that runs seal in-process)."""
    for logger in (logging.getLogger(), logging.getLogger("seal")):
        for handler in list(logger.handlers):
            name = getattr(handler, "baseFilename", None)
            if name and Path(name).parent == path.resolve():
                logger.removeHandler(handler)
                handler.close()


def fail(message: str) -> None:
    print(f"seal: error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    if _hydra_raises_set_here:  # composed: from here on Hydra reports errors as it always does
        os.environ.pop(HYDRA_RAISES, None)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return sweep.sweep_job(cfg, run_experiment, user_errors())
    run_path = Path(HydraConfig.get().runtime.output_dir)
    fresh = new_run_folder(run_path, cfg.get("resume"))
    try:
        run_experiment(cfg, run_path, discard_refused=fresh)
    except user_errors() as e:
        if fresh:
            remove_stub(run_path)
        fail(str(e))


def main() -> None:
    global _hydra_raises_set_here
    if sys.argv[1:2] == ["compare"]:
        from seal.infra.compare import main as compare

        sys.exit(compare(sys.argv[2:]))
    sweep.forget_last()
    if os.environ.get(HYDRA_RAISES) == "1":  # the user asked for Hydra's full traces
        _hydra_main()
        _after_sweep()
        return
    os.environ[HYDRA_RAISES] = "1"
    _hydra_raises_set_here = True
    try:
        _hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        sweep.discard_refused_sweep()
        fail(one_line(e))
    except ValueError as e:  # Hydra refuses two modes at once (`-m --cfg job`) with a bare ValueError
        if "can be specified" not in str(e):
            raise
        fail(f"{e} (to see a sweep job's config, drop -m and give that job's values)")
    finally:
        os.environ.pop(HYDRA_RAISES, None)
        _hydra_raises_set_here = False
    _after_sweep()


def _after_sweep() -> None:
    """A sweep (`seal -m`) with a failed job exits 1, after its summary."""
    if sweep.failed_jobs():
        sys.exit(1)


if __name__ == "__main__":
    main()
