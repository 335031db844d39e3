"""Run folders that never lose, mix or forge data: only a folder seal made is resumed and nothing of a user's
is overwritten; one process at a time holds a run folder (and a killed holder never blocks); records without
their checksum or made from input files that changed since are refused; force_resume says which config made
which record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose

from seal.cli import run_experiment
from seal.infra.inputs import BUILTIN_MODELS, fingerprints, input_values
from seal.infra.records_file import record_line as _line
from seal.infra.run_dir import RESUME_NEUTRAL, RunDir, fingerprint
from seal.infra.run_folder import MARKER, ResumeError, RunFolderError
from seal.infra.run_lock import LOCK_NAME

TINY = ["experiment=ki_eval", "model=tiny-random", "data.limit=1", "conditions=[base]", "wandb.mode=disabled",
        "qa_eval.max_new_tokens=4"]
SEAL_FILES = ("config.yaml", "run.json", "records.jsonl", "results.json", MARKER, LOCK_NAME)
CONFIG = {"seed": 0, "inner_loop": {"lr": 1e-3}, "wandb": {"mode": "disabled"}}


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seal.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False, **kw)


def error_line(stderr: str) -> str:
    """The CLI's one-line error, checking that it is one line and no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("seal: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("lr: 0.1  # my own notes, not a seal run\n")
    (path / "report.md").write_text("# My report\n")
    (path / "notes.txt").write_text("do not lose me\n")
    return path


# ------------------------------------------------------------------------------------ only seal's folders


def test_resume_into_a_users_folder_or_a_mistyped_path_is_refused_through_the_cli(tmp_path):
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    out = cli(*TINY, f"resume={mine}")
    assert out.returncode == 2
    line = error_line(out.stderr)
    assert f"resume={mine}: not a run folder" in line
    assert "3 file(s) that seal did not write: config.yaml, notes.txt, report.md" in line
    after = snapshot(mine)
    assert {k: after[k] for k in before} == before  # the user's files, byte for byte
    assert not any((mine / f).exists() for f in SEAL_FILES[1:])  # config.yaml aside: it is the user's

    typo = tmp_path / "runs" / "my_rnu"
    out = cli(*TINY, f"resume={typo}")
    assert out.returncode == 2
    assert f"resume={typo}: not a run folder" in error_line(out.stderr)
    assert not any((typo / f).exists() for f in SEAL_FILES)  # Hydra may have made the folder; seal wrote nothing


def test_a_new_run_in_a_folder_holding_a_users_file_is_refused(tmp_path):
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    with pytest.raises(ResumeError, match=r"holds 3 file\(s\) that seal did not write: config.yaml, notes.txt, "
                                          r"report.md.*hydra.run.dir"):
        RunDir(mine, CONFIG)
    assert snapshot(mine) == before and sorted(os.listdir(mine)) == ["config.yaml", "notes.txt", "report.md"]
    one = tmp_path / "one"
    one.mkdir()
    (one / "data.json").write_text("[]")
    with pytest.raises(ResumeError, match=r"1 file\(s\) that seal did not write: data.json"):
        run_experiment(compose(*TINY), one)
    assert os.listdir(one) == ["data.json"]
    # what Hydra writes before seal starts is not the user's: a new run starts there
    hydra = tmp_path / "hydra"
    (hydra / ".hydra").mkdir(parents=True)
    (hydra / "cli.log").write_text("")
    with RunDir(hydra, CONFIG) as rd:
        rd.put("a", {"v": 1})
    assert (hydra / MARKER).is_file() and json.loads((hydra / MARKER).read_text())["seal"]


def test_a_run_from_before_the_marker_still_resumes_and_is_adopted(tmp_path):
    with RunDir(tmp_path / "old", CONFIG) as rd:
        rd.put("a", {"v": 1})
    (rd.path / MARKER).unlink()
    (rd.path / LOCK_NAME).unlink()
    meta = json.loads((rd.path / "run.json").read_text())
    del meta["config_history"], meta["inputs"]
    (rd.path / "run.json").write_text(json.dumps(meta))
    (rd.path / "records.jsonl").write_text(_line({"key": "a", "v": 1}))  # as older seal wrote it: no _cfg
    with RunDir(rd.path, CONFIG, resume=True) as again:
        assert again.get("a") == {"key": "a", "v": 1} and again.record_configs == {"a": fingerprint(CONFIG)}
        assert again.provenance() is None
    assert json.loads((rd.path / MARKER).read_text())["adopted_from_an_older_seal"] is True


# ------------------------------------------------------------------------------------ one process at a time

GATED = textwrap.dedent("""
    import os, runpy, sys, time
    from pathlib import Path
    import seal.infra.run_dir

    gate, put_many = Path(os.environ["SEAL_TEST_GATE"]), seal.infra.run_dir.RunDir.put_many

    def gated(self, items):  # hold the run folder, mid-run, until the test opens the gate
        deadline = time.time() + 240
        while not gate.exists() and time.time() < deadline:
            time.sleep(0.05)
        return put_many(self, items)

    seal.infra.run_dir.RunDir.put_many = gated
    runpy.run_module("seal.cli", run_name="__main__")
""")


def test_two_processes_on_one_run_folder(tmp_path):
    """Two `seal` runs started at the same moment on one hydra.run.dir, then a resume of it while the first
    is still running: only one process runs it; the others exit 2 naming the holder's pid."""
    run, gate = tmp_path / "run", tmp_path / "gate"
    env = {**os.environ, "SEAL_TEST_GATE": str(gate)}
    args = [sys.executable, "-c", GATED, *TINY, f"hydra.run.dir={run}"]
    procs = [subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        deadline = time.time() + 240
        while all(p.poll() is None for p in procs) and time.time() < deadline:
            time.sleep(0.1)
        loser = next(p for p in procs if p.poll() is not None)
        holder = next(p for p in procs if p is not loser)
        assert loser.returncode == 2 and holder.poll() is None
        assert f"run folder {run} is in use by pid {holder.pid}" in error_line(loser.stderr.read())

        resume = subprocess.run(args + [f"resume={run}"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert resume.returncode == 2 and f"in use by pid {holder.pid}" in error_line(resume.stderr)

        gate.touch()
        assert holder.wait(timeout=240) == 0, holder.stderr.read()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    keys = [json.loads(line)["key"] for line in (run / "records.jsonl").read_text().splitlines()]
    assert keys and len(keys) == len(set(keys))
    with pytest.raises(ResumeError, match="already holds a run"):  # and a later new run there is refused
        RunDir(run, CONFIG)


def test_a_held_run_folder_refuses_a_second_run_dir_until_released(tmp_path):
    a = RunDir(tmp_path / "run", CONFIG)
    a.put("x", {"v": 1})
    with pytest.raises(RunFolderError, match=rf"in use by this process \(pid {os.getpid()}"):
        RunDir(tmp_path / "run", CONFIG, resume=True)
    a.close()
    with pytest.raises(RunFolderError, match="closed"):
        a.put("y", {"v": 2})
    with RunDir(tmp_path / "run", CONFIG, resume=True) as b:
        assert b.has("x") and not b.has("y")
        b.put("y", {"v": 2})
    assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_refused_process_starts_no_wandb_run(tmp_path, monkeypatch):
    from seal.infra import tracking

    started = []
    monkeypatch.setattr(tracking.Tracker, "__init__", lambda self, *a, **kw: started.append(a))
    run = tmp_path / "run"
    with RunDir(run, plain_config(*TINY)), pytest.raises(RunFolderError, match="in use"):  # another run holds it
        run_experiment(compose(*TINY, f"resume={run}"), run)
    assert started == []


def plain_config(*overrides: str) -> dict:
    from seal.infra.config import plain

    raw = plain(compose(*overrides))
    raw.pop("hydra", None)
    return raw


HOLDER = textwrap.dedent("""
    import sys, time
    from seal.infra.run_dir import RunDir
    rd = RunDir(sys.argv[1], {"seed": 0})
    rd.put("from_the_killed_holder", {"v": 1})
    print("holding", flush=True)
    time.sleep(600)
""")


def test_a_killed_holder_never_blocks_its_folder(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(RunFolderError, match=f"in use by pid {proc.pid} "):
            RunDir(run, {"seed": 0}, resume=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == proc.pid  # the stale file is still there
    with RunDir(run, {"seed": 0}, resume=True) as rd:
        assert rd.has("from_the_killed_holder")


TRY_LOCK = "import sys; from seal.infra.run_lock import RunLock; RunLock(sys.argv[1]); print('locked')"


def try_lock(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """A child made by fork (multiprocessing, DataLoader workers) closes its copy of the lock at once: the lock
    is the parent's alone, and ends when the parent releases it even while the child lives on."""
    rd = RunDir(tmp_path / "run", CONFIG)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            rd.close()  # closing the child's RunDir must not release the parent's lock
        finally:
            time.sleep(60)
            os._exit(0)
    try:
        time.sleep(0.5)
        held = try_lock(rd.path)
        assert held.returncode != 0 and f"in use by pid {os.getpid()}" in held.stderr
        rd.close()
        free = try_lock(rd.path)  # the child is still alive
        assert free.returncode == 0 and free.stdout.strip() == "locked", free.stderr[-2000:]
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# ------------------------------------------------------------------------------------ records bound to what made them


def test_a_record_without_its_checksum_is_refused_never_re_signed(tmp_path):
    with RunDir(tmp_path / "run", CONFIG) as rd:
        for i in range(3):
            rd.put(f"r{i}", {"score": i / 10})
    path = rd.path / "records.jsonl"
    lines = path.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["score"] = 1.0
    del forged["_sum"]
    lines[1] = json.dumps(forged)
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    with pytest.raises(RunFolderError, match=r"records.jsonl:2: record 'r1' has no checksum"):
        RunDir(rd.path, CONFIG, resume=True)
    assert path.read_bytes() == before
    lines[1] = lines[1][:-1] + ', "_sum": "0123456789abcdef"}'  # a plausible but wrong checksum
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFolderError, match=r"records.jsonl:2: record 'r1' fails its checksum"):
        RunDir(rd.path, CONFIG, resume=True)


def passages(question: str) -> list[dict]:
    return [{"title": "Velmora", "context": "Velmora went to the river at dawn.",
             "questions": [{"question": question, "answer": "river"}]}]


def test_an_input_file_edited_in_place_is_refused_then_redone_on_request(tmp_path):
    data = tmp_path / "passages.json"
    data.write_text(json.dumps(passages("Where did Velmora go?")))
    run = tmp_path / "run"
    overrides = [*TINY, "data=file", f"data.path={data}"]
    run_experiment(compose(*overrides), run)
    old_records = (run / "records.jsonl").read_text()
    assert "Where did Velmora go?" in old_records

    data.write_text(json.dumps(passages("Where did Velmora walk to?")))  # same file, same passage uid
    with pytest.raises(ResumeError, match=rf"data.path={data} changed since the run started \(content hash "
                                          rf"differs, size 144 -> 149 bytes\).*resume_inputs=redo"):
        run_experiment(compose(*overrides, f"resume={run}"), run)
    assert (run / "records.jsonl").read_text() == old_records

    with pytest.warns(UserWarning, match="the old records are kept in records"):
        results = run_experiment(compose(*overrides, f"resume={run}", "resume_inputs=redo"), run)
    aside = list(run.glob("records.*.jsonl"))
    assert len(aside) == 1 and aside[0].read_text() == old_records
    new = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [q["question"] for r in new for q in r["questions"]] == ["Where did Velmora walk to?"]
    assert results["n_passages"] == 1
    meta = json.loads((run / "run.json").read_text())
    (event,) = meta["inputs_history"]
    assert event["action"] == "redo" and event["records_moved_to"] == aside[0].name and "data.path" in event["changed"][0]
    assert meta["inputs"]["data.path"]["sha256"] == fingerprints({"data": {"path": str(data)}})["data.path"]["sha256"]
    run_experiment(compose(*overrides, f"resume={run}"), run)  # the new content is now the run's


def test_keep_resumes_over_changed_inputs_and_says_so(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("one")
    config = {**CONFIG, "data": {"path": str(data)}}
    with RunDir(tmp_path / "run", config) as rd:
        rd.put("a", {"v": 1})
    data.write_text("two")
    with pytest.warns(UserWarning, match="keeping the records"), \
            RunDir(rd.path, {**config, "resume_inputs": "keep"}, resume=True) as again:
        assert again.has("a")
    event = json.loads((rd.path / "run.json").read_text())["inputs_history"][0]
    assert event["action"] == "keep" and event["records_before"] == 1
    with pytest.raises(ResumeError, match="resume_inputs: 'sometimes' is not one of check, redo, keep"):
        RunDir(rd.path, {**config, "resume_inputs": "sometimes"}, resume=True)


def test_input_values_are_found_generically():
    config = {"data": {"path": "d.json", "limit": 3}, "eval_data": {"path": None}, "from_files": {"qa": "q.json"},
              "self_edit": {"template_file": "t.json", "templates": {"x": "not a file"}},
              "arc_data": {"challenges": "c.json", "solutions": "s.json"}, "model": {"name": "m"},
              "chat": {"replay_sources": ["general", "r.txt"]}, "resume": "runs/x", "grader": {"cache_dir": "/c"}}
    assert dict(input_values(config, RESUME_NEUTRAL)) == {
        "data.path": "d.json", "from_files.qa": "q.json", "self_edit.template_file": "t.json",
        "arc_data.challenges": "c.json", "arc_data.solutions": "s.json", "model.name": "m",
        "chat.replay_sources[0]": "general", "chat.replay_sources[1]": "r.txt"}


def test_large_files_and_model_folders_are_sampled_not_read_whole(tmp_path, monkeypatch):
    from seal.infra import inputs
    from seal.models import loading as models

    assert set(BUILTIN_MODELS) == {*models.EMBEDDED, *models.TINY}
    monkeypatch.setattr(inputs, "FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(inputs, "SAMPLE_BYTES", 100)
    big, folder = tmp_path / "big.bin", tmp_path / "model"
    big.write_bytes(b"a" * 5000)
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w" * 5000)
    config = {"data": {"path": str(big)}, "model": {"name": str(folder)}, "other": {"name": "tiny-random"}}
    before = fingerprints(config)
    assert set(before["data.path"]) >= {"size", "mtime_ns", "sampled_sha256"} and "sha256" not in before["data.path"]
    assert set(before["model.name"]["files"]) == {"config.json", "model.safetensors"}
    with open(big, "r+b") as f:  # the middle of a big file is not read: its mtime tells
        f.seek(2500)
        f.write(b"b")
    os.utime(big, ns=(1, 1))
    (folder / "tokenizer.json").write_text("{}")
    changes = inputs.input_changes(before, fingerprints(config))
    assert changes == [
        f"data.path={big} changed since the run started (modified since (same size, same first and last MiB))",
        f"model.name={folder} changed since the run started (added: tokenizer.json)"]
    assert fingerprints({"model": {"name": "tiny-random"}})["model.name"]["kind"] == "builtin"


# ------------------------------------------------------------------------------------ force_resume tells the truth


def test_force_resume_records_which_config_made_each_record(tmp_path):
    old, new = CONFIG, {**CONFIG, "inner_loop": {"lr": 5e-4}}
    with RunDir(tmp_path / "run", old) as rd:
        rd.put("a", {"score": 0.5})
        rd.put("b", {"score": 0.25})
    with RunDir(rd.path, new, resume=True, force=True) as rd:
        rd.put("c", {"score": 0.75})
        rd.put("b", {"score": 1.0})  # redone under the new config
        results = rd.write_json("results.json", {"accuracy": 0.6})
    on_disk = {(r := json.loads(line))["key"]: r["_cfg"] for line in (rd.path / "records.jsonl").read_text().splitlines()}
    assert on_disk == {"a": fingerprint(old), "b": fingerprint(new), "c": fingerprint(new)}
    meta = json.loads((rd.path / "run.json").read_text())
    first, second = meta["config_history"]
    assert first["fingerprint"] == fingerprint(old) and first["config"] == f"config.{fingerprint(old)[:8]}.yaml"
    assert yaml.safe_load((rd.path / first["config"]).read_text()) == old
    assert second["fingerprint"] == fingerprint(new) and second["changed"] == ["inner_loop.lr: 0.001 -> 0.0005"]
    assert second["records_before"] == 2
    prov = json.loads(results.read_text())["config_provenance"]
    by_fp = {c["fingerprint"]: c for c in prov["configs"]}
    assert by_fp[fingerprint(old)]["keys"] == ["a"] and by_fp[fingerprint(new)]["n_records"] == 2
    with RunDir(rd.path, new, resume=True) as again:  # reopened: the tags come back from the records
        assert again.record_configs == {"a": fingerprint(old), "b": fingerprint(new), "c": fingerprint(new)}
        assert again.provenance()["configs"][0]["keys"] == ["a"]
    with RunDir(tmp_path / "plain", old) as rd:  # a run made under one config gets no such section
        rd.put("a", {"score": 0.5})
        assert "config_provenance" not in json.loads(rd.write_json("results.json", {"x": 1}).read_text())
