"""wandb logging, offline by default, with its run id kept in the run folder for resume.

A recipe opens its run as a context manager (`with Tracker(...) as tracker:`), so the run is
finished whatever happens: with exit code 0 and the report (report.md and the figures) filed as an
artifact when the recipe returns, with exit code 1 when it raises. A failed job of a sweep
(`seal -m`, several jobs in one process) never leaves its run open for the next job to log into.

Metrics are logged against named axes (`define_metric`): the outer loop's `round`, an inner-loop
counter, a Trainer's optimizer step. wandb's own step stays for what has no axis of its own.
Runs are grouped by experiment (or sweep) and tagged with their recipe.

`mode=disabled` (used by tests) skips importing wandb at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Self

REPORT_FILES = ("report.md", "*.png")  # what a finished run files as its `report` artifact
# the summary a Trainer logs once at its end; the loop records its own (`m_step/loss`)
TRAINER_SUMMARY = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


@dataclass(frozen=True)
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "seal"
    entity: str | None = None
    group: str | None = None  # runs shown together; None: the experiment's name (a sweep job: its sweep's)
    tags: list[str] = field(default_factory=list)  # beside the recipe's name, which every run carries


class Tracker:
    def __init__(self, cfg: WandbConfig, run_dir, config: dict, name: str):
        self.run, self.rd = None, run_dir
        self._axes: dict[str, str | None] = {}  # metric -> its step metric, as defined in this run
        self._counts: dict[str, int] = {}
        if cfg.mode == "disabled":
            return
        import wandb

        experiment = config.get("experiment") or {}
        tags = list(dict.fromkeys([*cfg.tags, *([experiment["recipe"]] if experiment.get("recipe") else [])]))
        run_id = run_dir.meta.get("wandb_id") or uuid.uuid4().hex[:8]
        run_dir.meta["wandb_id"] = run_id
        run_dir.save_meta()
        # reinit: a run some other code left open is finished, never continued into
        self.run = wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, dir=str(run_dir.path),
                              id=run_id, resume="allow", name=name, config=config, reinit="finish_previous",
                              group=cfg.group or experiment.get("name"), tags=tags)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run is None:
            return
        if exc_type is None:
            self.log_artifact([p for pattern in REPORT_FILES for p in sorted(Path(self.rd.path).glob(pattern))])
        self.finish(exit_code=0 if exc_type is None else 1)

    def _define(self, key: str, axis: str) -> None:
        if self._axes.get(axis, "") is not None:  # a new axis (or one logged against another axis before)
            self.run.define_metric(axis, overwrite=True)
            self._axes[axis] = None
        if self._axes.get(key, "") not in (None, axis):  # an axis logged beside is left as it is
            # by exact name: an exact definition wins over any glob (a library's `*` included)
            self.run.define_metric(key, step_metric=axis)
            self._axes[key] = axis

    def log(self, values: dict[str, Any], axis: str | None = None) -> None:
        """Log `values` against `axis` (a metric logged with them: `round`, `inner_loop`, ...); an axis
        missing from `values` is a counter of this run's logs against it, 0, 1, 2, ..."""
        if self.run is None:
            return
        if axis is not None:
            if axis not in values:
                values = {**values, axis: self._counts.get(axis, 0)}
            self._counts[axis] = values[axis] + 1
            for key in values:
                self._define(key, axis)
        self.run.log(values)

    def log_table(self, name: str, columns: list[str], rows: list[list], **axes) -> None:
        """A `wandb.Table` under `name`, against the one axis given (`round=r`)."""
        if self.run is None:
            return
        import wandb

        axis = next(iter(axes), None)
        self.log({name: wandb.Table(columns=columns, data=rows), **axes}, axis=axis)

    def log_steps(self, prefix: str, steps: list[dict[str, float]], offset: int = 0, **fixed) -> None:
        """A training curve: entry i under `<prefix>/<key>` against `<prefix>/step` = offset + i + 1,
        with `fixed` values (`round=r`) beside each."""
        for i, values in enumerate(steps):
            self.log_step(prefix, offset + i + 1, values, **fixed)

    def log_step(self, prefix: str, step: int, values: dict[str, float], **fixed) -> None:
        if self.run is None:
            return
        vals = {f"{prefix}/{k}": v for k, v in values.items() if isinstance(v, (int, float))}
        if vals:
            self.log({**vals, **fixed, f"{prefix}/step": step}, axis=f"{prefix}/step")

    def trainer_callbacks(self, prefix: str, offset: int = 0, **fixed) -> list:
        """For a transformers Trainer's `callbacks=`: its step logs go into this run (`log_step`).

        Not transformers' `WandbCallback` (`report_to="wandb"`): it would log into this run too (it
        starts one only when none is active), but its setup writes the TrainingArguments over the
        run's config (`seed` among them) and defines every metric (`*`) against `train/global_step`,
        a glob wandb may match before ours, so the loop's metrics could end on the Trainer's axis."""
        if self.run is None:
            return []
        from transformers import TrainerCallback

        tracker = self

        class ToRun(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if state.is_world_process_zero and logs:
                    step = {k: v for k, v in logs.items() if k not in TRAINER_SUMMARY}
                    if len(step) > 1 or "epoch" not in step:
                        tracker.log_step(prefix, offset + state.global_step, step, **fixed)

        return [ToRun()]

    def log_artifact(self, paths: list[Path], kind: str = "report") -> None:
        """The files as one artifact of this run, named after the run (`report-<run id>`)."""
        if self.run is None or not paths:
            return
        import wandb

        art = wandb.Artifact(name=f"{kind}-{self.run.id}", type=kind)
        for p in paths:
            art.add_file(str(p), name=Path(p).name)
        self.run.log_artifact(art)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=exit_code)
