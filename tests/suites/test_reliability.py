"""The run folder under hostile conditions: records edited or corrupted on disk are detected by their
checksums and refused; a full disk mid-write rolls the file back to its last whole record with a
clear error; an unwritable folder is refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from seal.infra.run_dir import RunDir
from seal.infra.run_folder import RunFolderError


def make(tmp_path, n=3):
    """A run folder with n records, closed (released for the next RunDir)."""
    with RunDir(tmp_path / "run", {"seed": 0}) as rd:
        for i in range(n):
            rd.put(f"r{i}", {"accuracy": i / 10, "answers": ["x"] * i})
    return rd


def test_an_edited_record_fails_its_checksum(tmp_path):
    rd = make(tmp_path)
    path = rd.path / "records.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["accuracy"] = 1.0  # valid JSON, plausible value: only the checksum can tell
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFolderError, match=r"records.jsonl:2: record 'r1' fails its checksum"):
        RunDir(rd.path, {"seed": 0}, resume=True)


def test_a_flipped_byte_is_detected(tmp_path):
    rd = make(tmp_path)
    path = rd.path / "records.jsonl"
    data = bytearray(path.read_bytes())
    i = data.index(b'"x"')
    data[i + 1] = ord("y")  # bit rot inside a string: still valid JSON
    path.write_bytes(bytes(data))
    with pytest.raises(RunFolderError, match="fails its checksum"):
        RunDir(rd.path, {"seed": 0}, resume=True)


def test_records_round_trip_without_their_checksum_field(tmp_path):
    rd = make(tmp_path)
    again = RunDir(rd.path, {"seed": 0}, resume=True)
    assert again.get("r2") == {"key": "r2", "accuracy": 0.2, "answers": ["x", "x"]}


def test_a_full_disk_rolls_back_to_the_last_whole_record(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past a size, exactly as a full disk does."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from seal.infra.run_dir import RunDir
        from seal.infra.run_folder import RunFolderError
        rd = RunDir({str(tmp_path / "full")!r}, {{"seed": 0}})
        size = (rd.path / "config.yaml").stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
        n = 0
        try:
            while True:
                rd.put(f"r{{n}}", {{"payload": "z" * 300}})
                n += 1
        except RunFolderError as e:
            print(n)
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    n, message = out.stdout.splitlines()[0], "\n".join(out.stdout.splitlines()[1:])
    assert int(n) > 0 and "rolled back to its last whole record" in message and "resume=" in message
    text = (tmp_path / "full" / "records.jsonl").read_text()
    assert text.endswith("}\n") and len(text.splitlines()) == int(n)  # nothing half-written
    rd = RunDir(tmp_path / "full", {"seed": 0}, resume=True)  # and the folder resumes cleanly
    assert len(rd.records) == int(n)


def test_an_unwritable_run_folder_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunFolderError, match="not writable"):
        RunDir(blocker / "run", {"seed": 0})


def test_the_cli_reports_a_corrupt_run_folder_in_one_line(tmp_path):
    rd = make(tmp_path)
    path = rd.path / "records.jsonl"
    path.write_text(path.read_text().replace('"accuracy": 0.1', '"accuracy": 0.9'))
    (rd.path / "config.yaml").write_text("seed: 0\n")
    out = subprocess.run([sys.executable, "-m", "seal.cli", "experiment=ki_eval", "model=tiny-random",
                          f"hydra.run.dir={rd.path}", f"resume={rd.path}", "force_resume=true",
                          "wandb.mode=disabled"], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 2
    assert "fails its checksum" in out.stderr and "Traceback" not in out.stderr
