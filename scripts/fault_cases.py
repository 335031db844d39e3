"""The adversarial cases of `scripts/faults.py` besides kills: two processes racing on one run folder,
forged records, input files edited between a run and its resumption, and impossible configs.

Each case counts what a user could lose or be misled by: a duplicated record, a forged or stale record
trusted, a user file overwritten, a run folder left behind by a refused config, a traceback instead
of one line. Every count must be 0; `faults.py --adversarial N` runs N trials of each.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled", "TQDM_DISABLE": "1"}

BAD_OVERRIDES = [
    "inner_loop.epochs=-1", "inner_loop.lr=nan", "inner_loop.lr=inf", "inner_loop.batch_size=0",
    "inner_loop.lora_r=0", "qa_eval.max_new_tokens=-1", "self_edit.k=100000", "self_edit.top_p=0",
    "self_edit.temperature=-1", "selection.fraction=2", "m_step.effective_batch=0", "m_step.lr=-0.1",
    "restem.rounds=-1", "inner_loop.epochs=abc", "seed=-5", "data.limit=0", "inner_loop.warmup_ratio=1.5",
]


def cli(config: list[str], path: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "seal.cli", *config, f"hydra.run.dir={path}", *extra]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=ENV)


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def one_line_error(rc: int, err: str) -> bool:
    """A user error as seal promises it: exit 2, one `seal: error:` line, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip() and "warn" not in ln.lower()]
    return rc == 2 and "Traceback" not in err and len(lines) >= 1 and lines[-1].startswith("seal: error:")


def whole_records(path: Path) -> list[dict]:
    """The records on disk that are whole JSON lines (a kill may have torn the last one)."""
    f = path / "records.jsonl"
    if not f.exists():
        return []
    out = []
    for line in f.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def record_keys(path: Path) -> list[str]:
    return [r["key"] for r in whole_records(path) if isinstance(r, dict) and "key" in r]


def races(root: Path, config: list[str], trials: int, clean, ref_results: dict, log) -> dict:
    """Two processes on one folder at the same moment: two fresh starts, then (after a kill) two resumes.
    Exactly one may write; the other exits 2 naming the holder; no key is written twice; the results
    equal the uninterrupted reference."""
    out = Counter()
    for t in range(trials):
        path = root / f"race{t}"
        a, b = cli(config, path), cli(config, path)
        (fa, ea), (fb, eb) = finish(a), finish(b)
        out["races"] += 1
        out["processes"] += 2
        winners = [rc for rc in (fa, fb) if rc == 0]
        losers = [(rc, e) for rc, e in ((fa, ea), (fb, eb)) if rc != 0]
        out["refused_with_one_line"] += sum(one_line_error(rc, e) for rc, e in losers)
        out["both_ran"] += len(winners) == 2
        out["failed_otherwise"] += sum(rc not in (0, 2) for rc in (fa, fb))
        keys = record_keys(path)
        out["duplicated"] += sum(n - 1 for n in Counter(keys).values() if n > 1)
        # two resumes of a run that was killed half way
        proc = cli(config, path.with_name(f"race{t}_resume"))
        time.sleep(random.Random(t).uniform(2, 5))
        os.killpg(proc.pid, 9)
        proc.wait()
        rpath = path.with_name(f"race{t}_resume")
        a, b = cli(config, rpath, f"resume={rpath}"), cli(config, rpath, f"resume={rpath}")
        (ra, ea), (rb, eb) = finish(a), finish(b)
        out["races"] += 1
        out["processes"] += 3
        out["refused_with_one_line"] += sum(one_line_error(rc, e) for rc, e in ((ra, ea), (rb, eb)) if rc != 0)
        out["failed_otherwise"] += sum(rc not in (0, 2) for rc in (ra, rb))
        keys = record_keys(rpath)
        out["duplicated"] += sum(n - 1 for n in Counter(keys).values() if n > 1)
        if (rpath / "results.json").exists():
            out["results_identical"] += clean(json.loads((rpath / "results.json").read_text())) == clean(ref_results)
            out["results_checked"] += 1
        log(f"  race {t}: two fresh starts exit {fa}, {fb}; two resumes exit {ra}, {rb}")
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(rpath, ignore_errors=True)
    return dict(out)


def forged(root: Path, config: list[str], finished: Path, trials: int, rng: random.Random, log) -> dict:
    """A finished run's records edited on disk: a score changed (checksum kept), a checksum removed
    with the score changed, a line cut in the middle of the file. Resuming must refuse each, naming
    the file, and leave records.jsonl byte-identical."""
    out = Counter()
    for t in range(trials):
        for kind in ("score_changed", "checksum_removed", "line_cut"):
            path = root / f"forged{t}_{kind}"
            shutil.copytree(finished, path)
            f = path / "records.jsonl"
            lines = f.read_text().splitlines()
            i = rng.randrange(len(lines) - 1)
            rec = json.loads(lines[i])
            if kind == "line_cut":
                lines[i] = lines[i][: len(lines[i]) // 2]
            else:
                if kind == "checksum_removed":
                    rec.pop("_sum", None)
                rec["forged"] = True
                if "accuracy" in rec:
                    rec["accuracy"] = 1.0
                lines[i] = json.dumps(rec)
            f.write_text("\n".join(lines) + "\n")
            before = f.read_bytes()
            rc, err = finish(cli(config, path, f"resume={path}"))
            out["forgeries"] += 1
            out["refused_with_one_line"] += one_line_error(rc, err) and "records.jsonl" in err
            out["trusted"] += rc == 0
            out["file_changed"] += f.read_bytes() != before
            log(f"  forged {kind}: exit {rc}")
            shutil.rmtree(path, ignore_errors=True)
    return dict(out)


def edited_inputs(root: Path, config: list[str], trials: int, log) -> dict:
    """A run on a data file, the file edited in place, then resumed: refused naming `data.path`; with
    `resume_inputs=redo` the old records are set aside and the results equal a fresh run on the new file."""
    from seal.data.fictional import generate_passages

    out = Counter()
    for t in range(trials):
        data = root / f"edited{t}.json"
        passages = [p.to_dict() for p in generate_passages(4, seed=100 + t)]
        data.write_text(json.dumps(passages))
        cfg = [*config, f"data.path={data}"]
        path = root / f"edited{t}"
        rc, err = finish(cli(cfg, path))
        if rc != 0:
            raise RuntimeError(f"edited-input base run failed:\n{err[-2000:]}")
        passages[t % len(passages)]["context"] += " It was later renamed."
        data.write_text(json.dumps(passages))
        rc, err = finish(cli(cfg, path, f"resume={path}"))
        out["edits"] += 1
        out["refused_naming_the_file"] += one_line_error(rc, err) and "data.path" in err
        out["silently_reused"] += rc == 0
        rc, err = finish(cli(cfg, path, f"resume={path}", "resume_inputs=redo"))
        fresh = root / f"edited{t}_fresh"
        rc2, _ = finish(cli(cfg, fresh))
        same = rc == 0 and rc2 == 0 and json.loads((path / "results.json").read_text()) == json.loads(
            (fresh / "results.json").read_text())
        out["redo_equals_fresh"] += same
        out["old_records_kept"] += any(p.name.startswith("records.") and p.name != "records.jsonl"
                                       for p in path.iterdir())
        log(f"  edited input {t}: resume refused {out['refused_naming_the_file']}, redo equals fresh {same}")
        for p in (path, fresh):
            shutil.rmtree(p, ignore_errors=True)
    return dict(out)


def bad_configs(root: Path, config: list[str], trials: int, rng: random.Random, log) -> dict:
    """Impossible values: each must exit 2 with one line naming the key, and leave no run folder."""
    out = Counter()
    picks = BAD_OVERRIDES + [rng.choice(BAD_OVERRIDES) for _ in range(max(0, trials - len(BAD_OVERRIDES)))]
    for i, override in enumerate(picks[:max(trials, len(BAD_OVERRIDES))]):
        path = root / f"bad{i}"
        rc, err = finish(cli(config, path, override), timeout=300)
        key = override.split("=")[0]
        out["configs"] += 1
        out["refused_with_one_line"] += one_line_error(rc, err)
        out["key_named"] += key.split(".")[-1] in err
        out["folders_left"] += path.exists()
        out["ran_anyway"] += rc == 0
        if not one_line_error(rc, err):
            log(f"  bad config {override}: exit {rc}: {err.strip().splitlines()[-1:] if err.strip() else ''}")
        shutil.rmtree(path, ignore_errors=True)
    return dict(out)
