"""Shared by the sweep and compare tests: the `seal` command run in this process (as `seal <args>` would
run it, exit code and output captured), on the learning world of `tests/learning.py`, where the inner
loop really changes accuracy (lr 1e-2 learns every passage, lr 1e-6 none), so headlines differ."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import learning
from hydra.experimental.callback import Callback

TEMPLATE_ENV = "SEAL_TEST_QA_TEMPLATE"  # the world's QA template holds a newline: passed through the environment


def world(*extra: str, **changes) -> list[str]:
    """`seal` arguments of a ki_eval run in the learning world (base and passage conditions); `changes`
    replace its values: world(**{"inner_loop.lr": "0.01,0.000001"})."""
    base = ["experiment=ki_eval", "model=tiny-random", *learning.OVERRIDES, f"qa_eval.template=${{oc.env:{TEMPLATE_ENV}}}",
            "wandb.mode=disabled", "conditions=[base,passage]", "data=file"]
    out = [o for o in base if o.split("=", 1)[0] not in changes]
    return out + [f"{k}={v}" for k, v in changes.items()] + list(extra)


def write_world(path: Path, n: int = 2, start: int = 0) -> Path:
    return learning.write_file(path, learning.passages(n, start=start))


def run_seal(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`seal <args>` in this process: (exit code, stdout, stderr). Hydra's logging set-up is undone after."""
    from seal.cli import main

    monkeypatch.setenv(TEMPLATE_ENV, learning.QA_TEMPLATE)
    monkeypatch.setattr(sys, "argv", ["seal", *args])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:], root.level = handlers, level
    out, err = capsys.readouterr()
    return code, out, err


class ReturnProbe(Callback):
    """Test-only Hydra callback: writes each job's folder and return value (what the sweeper receives) as
    one JSON line to `out`."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        with open(self.out, "a") as f:
            f.write(json.dumps({"dir": str(config.hydra.runtime.output_dir), "status": job_return.status.name,
                                "value": job_return.return_value if job_return.status.name == "COMPLETED" else None})
                    + "\n")


def probe(path: Path) -> list[str]:
    """The overrides that add `ReturnProbe` writing to `path`."""
    return ["+hydra.callbacks.probe._target_=cli_runs.ReturnProbe", f"+hydra.callbacks.probe.out={path}"]
