"""runtime=ray on a local Ray with 2 CPU workers and the tiny model: the same records and results as
the local runtime for the same seeds, and a worker SIGKILLed mid-round costs nothing: its chunk is
retried on a fresh worker, no record is lost or written twice, the results are unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, compose
from tiny_restem import restem

from seal.cli import run_experiment

ray = pytest.importorskip("ray", reason="runtime=ray needs the ray extra (pip install 'seal-rl[ray]')")

FAST = restem(**{"restem.rounds": 1, "restem.contexts_per_round": 4, "inner_loop.adapters_per_batch": 1})
RAY = ["runtime=ray", "runtime.workers=2"]


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in (path / "records.jsonl").read_text().splitlines() if x.strip()]


def without_timing(obj):
    """Records with wall-clock fields dropped (everything else must match exactly)."""
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items()
                if k not in ("seconds", "tokens_per_second", "_sum", "_cfg")}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def by_key(path: Path) -> dict[str, dict]:
    return {r["key"]: without_timing(r) for r in records(path)}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "run"
    return path, run_experiment(compose(*FAST), path)


def test_ray_pool_gives_the_local_runtimes_records_and_results(local_run, tmp_path):
    path = tmp_path / "ray"
    try:
        results = run_experiment(compose(*FAST, *RAY), path)
    finally:
        ray.shutdown()
    assert json.dumps(results, sort_keys=True) == json.dumps(local_run[1], sort_keys=True)
    assert by_key(path) == by_key(local_run[0])
    assert any(k.startswith("estep/0/") for k in by_key(path))


def worker_pids() -> list[int]:
    """Processes of live inner-loop workers (Ray titles actor processes `ray::InnerLoopWorker`)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::InnerLoopWorker"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_a_worker_killed_mid_round_loses_and_duplicates_nothing(local_run, tmp_path):
    path = tmp_path / "killed"
    args = [sys.executable, "-m", "seal.cli", *FAST, *RAY, f"hydra.run.dir={path}"]
    log = tmp_path / "output.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(args, cwd=REPO, stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
        deadline, killed = time.time() + 300, None
        while time.time() < deadline and proc.poll() is None and killed is None:
            done = [r for r in records(path) if r["key"].startswith("estep/0/")] if (path / "records.jsonl").exists() \
                else []
            pids = worker_pids()
            if len(done) >= 3 and pids:  # the E-step is under way: kill a worker as the OOM killer would
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        assert killed is not None, "the run finished (or never started its E-step) before a worker could be killed"
        rc = proc.wait(timeout=600)
    output = log.read_text()
    assert rc == 0, output[-3000:]
    assert "a worker died" in output  # the lost chunk was retried, not skipped
    keys = [r["key"] for r in records(path)]
    assert [k for k, n in Counter(keys).items() if n > 1] == []  # nothing written twice
    assert by_key(path) == by_key(local_run[0])  # nothing lost, nothing different
    assert json.loads((path / "results.json").read_text()) == json.loads(json.dumps(local_run[1]))


def test_bad_runtime_is_refused(tmp_path):
    from hydra.errors import HydraException

    from seal.infra.hydra_config import one_line

    with pytest.raises(HydraException) as e:  # refused while the config is composed (seal.infra.schemas)
        compose(*FAST, "runtime.name=slurm")
    assert "runtime.name=slurm" in one_line(e.value) and "expected one of [local, ray]" in one_line(e.value)


class Chatty:
    """A domain whose inner loops, in the worker, show a progress bar and raise a warning (pickled
    by value: the workers cannot import this test module)."""

    def open(self, policy, round_):
        return self

    def adapt_many(self, items):
        import warnings

        from tqdm.auto import tqdm

        for _ in tqdm(items, desc="chatty inner loops"):
            pass
        warnings.warn("chatty worker: the learning rate looks high", stacklevel=1)
        return [{"item": i} for i in items]

    def close(self):
        pass


def test_worker_warnings_and_progress_reach_the_driver(capfd, monkeypatch):
    from ray import cloudpickle

    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # seal-chat run in-process sets it; workers inherit it

    from seal.infra.runtime import RayRunner, RuntimeConfig

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runner = RayRunner(RuntimeConfig(name="ray", workers=1), Chatty())
    out = ""
    try:
        assert [o for _, outs in runner.map(None, "policy", 0, [[1, 2, 3]]) for o in outs] == [
            {"item": 1}, {"item": 2}, {"item": 3}]
        deadline = time.time() + 60  # worker output reaches the driver through Ray's log monitor, not at once
        while time.time() < deadline and not ("the learning rate looks high" in out and "chatty inner loops: 100%" in out):
            time.sleep(0.2)
            out += "".join(capfd.readouterr())
    finally:
        runner.close()
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    lines = out.splitlines()
    assert "Logging error" not in out, out[:3000]
    assert any("InnerLoopWorker pid=" in x and "the learning rate looks high" in x for x in lines), out[-3000:]
    # the worker's bar is drawn by the driver (`tqdm_ray`), not relayed as the worker's terminal redraws
    assert any("(pid=" in x and "chatty inner loops: 100%" in x for x in lines), out[-3000:]
    assert not any("InnerLoopWorker" in x and "chatty inner loops" in x for x in lines), out[-3000:]
