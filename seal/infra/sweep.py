"""`seal -m` (Hydra multirun): one job per combination of the swept values, each in its own run folder
under the sweep folder (`hydra.sweep.dir`, `runs/sweeps/<experiment>/<time>` by default).

A job that fails, on a user error or on any other exception, does not end the sweep: the error goes to
the job's log (a traceback for anything but a user error), the job folder gets `failed.json` (the error
and its type), and the next job runs. The job's return value is its headline metric
(`seal.infra.headline`, or `sweep_metric=<dotted path into results.json>`), which is what Hydra's
optimising sweepers (Optuna, Ax, Nevergrad) minimise or maximise. A failed job returns NaN under Hydra's
basic sweeper, which only reads the value to re-raise a failure; under any other sweeper it raises after
recording, so that the optimiser marks the trial failed its own way (`hydra.sweeper.max_failure_rate`).
Returning NaN there would not do: hydra-optuna-sweeper 1.3.0 stops the whole study on a NaN objective
(hydra issue #2237).

After the sweep, `SweepReport` (a Hydra callback, configured in `seal/configs/config.yaml`) prints one
screen: every job, ok or failed, and its folder; `seal.cli.main` then exits 1 if any job failed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from seal.infra.config import ConfigError
from seal.infra.run_folder import now

log = logging.getLogger("seal")

FAILED = "failed.json"  # in a job folder: the job failed, and why
RUN_MARKS = (".seal-run", "results.json", FAILED, "run.json", ".hydra")  # any of them: a run or job folder
RESUME_REFUSED = ("resume= cannot be combined with -m: every sweep job runs in a folder of its own. Resume one "
                  "job without -m: seal <that job's overrides> resume=<its folder>")
MAX_NAME = 80  # characters of a job folder's name taken from its overrides
SUMMARY_ROWS = 20

_fixed: set[str] = set()  # keys the command line sets to one value for every job (left out of folder names)
_last: dict[str, Any] = {}  # the last sweep of this process: {"failed": n}
_metric_names: dict[Path, str] = {}  # job folder -> the dotted path its value was read from (this process's jobs)


# ------------------------------------------------------------------------------------- the job folder name


def job_folder_name(num: int, overrides: list[str]) -> str:
    """`<job number>_<its overrides>`: only the swept ones where this process knows which are fixed,
    characters other than letters, digits and `._=,+-` as `_`, and at most MAX_NAME characters (a cut
    name ends in a hash of the whole, so two jobs never share a folder)."""
    shown = [o for o in overrides if _key(o) not in _fixed]
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(shown))
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{num}_{name}" if name else str(num)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _strings(overrides: Any) -> list[str]:
    """Override strings as typed: an interpolation in one (`x=${oc.env:X}`) is not resolved."""
    return [str(o) for o in (OmegaConf.to_container(overrides, resolve=False) if OmegaConf.is_config(overrides)
                             else overrides)]


OmegaConf.register_new_resolver("seal_sweep_subdir", lambda num, overrides: job_folder_name(int(num), _strings(overrides)),
                                replace=True)


# ------------------------------------------------------------------------------------------------ a job


def sweep_job(cfg: DictConfig, run_experiment: Callable[[DictConfig, Path], dict],
              user_errors: tuple[type[Exception], ...]) -> float:
    """Run one sweep job into its folder with `run_experiment` (`seal.cli`'s) and return its headline metric
    (see the module's docstring); `user_errors` are logged as one line, any other exception with its traceback."""
    hc = HydraConfig.get()
    path, num = Path(hc.runtime.output_dir), hc.job.num
    try:
        if cfg.get("resume"):
            raise ConfigError(RESUME_REFUSED)
        share_wandb_group(cfg, Path(hc.sweep.dir))
        run_experiment(cfg, path)
        if cfg.get("plan"):
            return math.nan
        value, name = objective(path, cfg.experiment.recipe, cfg.get("sweep_metric"))
    except user_errors as e:
        log.error("job #%s failed: %s", num, e)
        return _failed(path, e, basic_sweeper(hc))
    except Exception as e:
        log.exception("job #%s failed with %s", num, type(e).__name__)
        return _failed(path, e, basic_sweeper(hc), traceback.format_exc())
    log.info("job #%s: %s = %s", num, name, value)
    _metric_names[path] = name
    if math.isnan(value) and not basic_sweeper(hc):  # the run finished, but gives the optimiser nothing
        raise SweepJobFailed(f"{name} is not a number in {path / 'results.json'}; the trial counts as failed")
    return value


class SweepJobFailed(RuntimeError):
    """What a failed job raises to an optimising sweeper (its message is the job's error)."""


def basic_sweeper(hc: Any) -> bool:
    return str(hc.sweeper.get("_target_", "")).endswith(".BasicSweeper")


def _failed(path: Path, error: Exception, basic: bool, trace: str | None = None) -> float:
    record_failure(path, error, trace, _strings(HydraConfig.get().overrides.task))
    if basic:
        return math.nan
    raise SweepJobFailed(f"{type(error).__name__}: {error} (the sweeper marks the trial failed; an optimising "
                         f"sweeper goes on past failed trials with hydra.sweeper.max_failure_rate=1.0)") from None


def record_failure(path: Path, error: Exception, trace: str | None = None, overrides: list[str] | None = None) -> None:
    record = {"error": str(error), "type": type(error).__name__, "at": now(), "overrides": overrides or []}
    if trace:
        record["traceback"] = trace
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / FAILED).write_text(json.dumps(record, indent=2))
    except OSError as e:  # the sweep goes on; the summary reads the job's return instead
        log.error("%s: could not record the failure (%s)", path / FAILED, e.strerror or e)


def failure(path: Path) -> dict | None:
    """The failure recorded in job folder `path`, or None: none, or a results.json written after it (the
    job was resumed and finished since)."""
    f, results = path / FAILED, path / "results.json"
    if not f.is_file() or results.is_file() and results.stat().st_mtime > f.stat().st_mtime:
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as e:
        return {"error": f"{f} is unreadable ({e})", "type": "unknown"}


def objective(path: Path, recipe: str, override: str | None) -> tuple[float, str]:
    """The job's headline from its results.json: (value, its dotted path)."""
    from seal.infra.headline import metric_path, metric_value

    results = json.loads((path / "results.json").read_text())
    keys = metric_path(recipe, results, override)
    return metric_value(results, keys), ".".join(keys)


def job_state(path: Path) -> tuple[str, str]:
    """("ok" | "failed" | "unfinished", why) of a job or run folder: failed with a recorded failure;
    unfinished without results.json (killed, or running); ok otherwise."""
    f = failure(path)
    if f is not None:
        return "failed", f"{f.get('type')}: {f.get('error')}"
    if (path / "results.json").is_file() or (path / "plan.json").is_file():
        return "ok", ""
    return "unfinished", "no results.json (killed, or still running)"


def share_wandb_group(cfg: DictConfig, sweep_dir: Path) -> None:
    """The jobs of a sweep that logs to wandb share one group, named after the sweep folder, unless the
    user set one; only where the wandb config has a group."""
    from seal.infra.tracking import WandbConfig

    if "group" not in {f.name for f in dataclasses.fields(WandbConfig)}:
        return
    wandb = cfg.get("wandb")
    if wandb is None or wandb.get("mode") == "disabled" or wandb.get("group"):
        return
    with open_dict(cfg):
        cfg.wandb.group = "-".join(sweep_dir.parts[-2:])


# ------------------------------------------------------------------------------------ the sweep's summary


class SweepReport(Callback):
    """Refuses `resume=` in a sweep before any job starts, collects each job's folder and return value,
    and prints the summary when the sweep ends (Hydra calls these hooks; single runs use none of them)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[int, Path, Any]] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.jobs = []
        _last.clear()
        parsed = OverridesParser.create().parse_overrides(_strings(config.hydra.overrides.task))
        if any(o.key_or_group == "resume" for o in parsed) or config.get("resume"):
            print(f"seal: error: {RESUME_REFUSED}", file=sys.stderr)
            raise SystemExit(2)  # Hydra's callbacks turn exceptions into warnings; this ends the command
        _fixed.clear()
        swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
        _fixed.update(o.key_or_group for o in parsed if o.key_or_group not in swept)
        _last["dir"] = Path(config.hydra.sweep.dir)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
            self.jobs.append((int(config.hydra.job.num), Path(config.hydra.runtime.output_dir), value))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        lines, failed = summary(Path(config.hydra.sweep.dir), self.jobs)
        print("\n".join(lines), flush=True)
        _last["failed"] = failed
        _fixed.clear()


def summary(sweep_dir: Path, jobs: list[tuple[int, Path, Any]]) -> tuple[list[str], int]:
    """The sweep's summary lines and its number of failed jobs. `jobs`: the (number, folder, return value)
    this process saw; job folders found in `sweep_dir` besides them (another launcher ran them) are
    listed without a value."""
    seen = {p.resolve() for _, p, _ in jobs}
    found = [(n, p, None) for p in job_folders(sweep_dir) if p.resolve() not in seen
             for n in [_number(p.name)]]
    rows, failed = [], 0
    for num, path, value in sorted(jobs + found, key=lambda j: (j[0], str(j[1]))):
        where = path.relative_to(sweep_dir) if path.is_relative_to(sweep_dir) else path
        state, why = job_state(path)
        if state != "ok":
            failed += 1
            rows.append(f"  #{num:<3} FAILED  {where}  {(why.splitlines() or [''])[0][:160]}")
        else:
            name = _metric_names.get(path)
            shown = f"  {name} = {value:.4g}" if name and isinstance(value, float) else ""
            rows.append(f"  #{num:<3} ok      {where}{shown}")
    total = len(rows)
    head = f"seal -m: {total} job(s) in {sweep_dir}: {total - failed} ok, {failed} failed"
    if total > SUMMARY_ROWS:
        bad = [r for r in rows if " FAILED " in r]
        rows = (bad + [r for r in rows if " FAILED " not in r])[:SUMMARY_ROWS] + [f"  ... and {total - SUMMARY_ROWS} more"]
    tail = ["  failed jobs: their error is in failed.json, the details in the job's log (cli.log)"] if failed else []
    return [head, *rows, *tail, f"  side by side: seal compare {sweep_dir}"], failed


def job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders in a sweep folder (Hydra's `.hydra/` or seal's files in it), by job number."""
    if not sweep_dir.is_dir():
        return []
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and any((p / m).exists() for m in RUN_MARKS)),
                  key=lambda p: (_number(p.name), p.name))


def _number(name: str) -> int:
    m = re.match(r"\d+", name)
    return int(m.group()) if m else sys.maxsize


def discard_refused_sweep() -> None:
    """A sweep refused before its first job (a value that fails when composed, in any job) leaves no
    folder: Hydra's `multirun.yaml` alone is removed with its folder."""
    d = _last.get("dir")
    try:
        if d is not None and d.is_dir() and {e.name for e in d.iterdir()} <= {"multirun.yaml"}:
            (d / "multirun.yaml").unlink(missing_ok=True)
            d.rmdir()
    except OSError:  # best effort, as for a refused run's stub
        pass


def forget_last() -> None:
    _last.clear()
    _fixed.clear()
    _metric_names.clear()


def failed_jobs() -> int:
    """Failed jobs in this process's last sweep (0 when it ran none)."""
    return int(_last.get("failed", 0))
