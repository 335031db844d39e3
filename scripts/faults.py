"""Fault injection: SIGKILL a small real run at random points, resume it, and check nothing was lost,
redone or changed.

    python scripts/faults.py --kills 30 --out experiments/reliability_faults.json    # ~10 min on 2 cores

Why: a run that lasts days will be killed (preemption, OOM, a closed laptop). The promise is that
`resume=<run folder>` continues where it stopped, never redoes a finished inner loop, and ends with
exactly the results of an uninterrupted run. This script tests that promise with real processes:

1. one uninterrupted run of the tiny ReST-EM config (every phase: sampling, unadapted scores, inner
   loops, selection, the M-step, the next policy's evaluation, the report) is the reference;
2. runs are started and SIGKILLed (the whole process group, as an OOM killer or a scheduler would),
   each kill at a random point: after a random number of records has been written, inside the
   M-step (when its temp folder appears), or at a random time; each killed run is resumed and killed
   again, `--kills-per-run` times, then left to finish;
3. after every kill, the keys of the whole records on disk are noted; the next process must not
   write any of them again (nothing redone or duplicated), and the finished run's records (wall-clock
   fields aside) and `results.json` must equal the reference's (nothing lost or changed).

It prints a table of kills by phase and the checks, and writes the counts as JSON to `--out`.

`--adversarial N` adds N trials of each case of `scripts/fault_cases.py`: two processes started at
once on one run folder (fresh and resumed), records forged on disk, an input file edited between a
run and its resumption, and impossible configs. Each counts what a user could lose or be misled by.

    python scripts/faults.py --kills 10 --adversarial 3 --out experiments/reliability_faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from fault_cases import whole_records  # scripts/ is on the path when this script runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_restem import restem  # noqa: E402  (the tests' tiny ReST-EM run)

REPO = Path(__file__).resolve().parents[1]
CONFIG = restem(**{"restem.rounds": 1, "restem.contexts_per_round": 4, "m_step.epochs": 2,
                   "inner_loop.adapters_per_batch": 1})
TIMING = ("seconds", "tokens_per_second")


def start(path: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "seal.cli", *CONFIG, f"hydra.run.dir={path}"] + ([f"resume={path}"] if resume else [])
    env = {**os.environ, "WANDB_MODE": "disabled", "TQDM_DISABLE": "1"}
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)


def clean(obj):
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if k not in TIMING and k not in ("_sum", "_cfg")}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


def key_phase(key: str) -> str:
    """The phase a record's key belongs to (the phase that is running once it is the last record)."""
    if key.startswith("eval/0"):
        return "round 0 evaluation"
    if key.startswith("estep/"):
        return "E-step (sampling, inner loops)"
    if key.startswith("select/"):
        return "M-step"
    return "round 1 evaluation"


def in_m_step(path: Path) -> bool:
    """The M-step is running: its temp folder exists in the run folder."""
    return path.exists() and any(p.name.startswith(".policy_round") for p in path.iterdir())


def phase(path: Path, recs: list[dict]) -> str:
    """Which phase the run was in when it was killed, from what is on disk."""
    if in_m_step(path):
        return "M-step"
    if not recs:
        return "start-up / first sampling"
    last = recs[-1]["key"]
    if (path / "results.json").exists():
        return "report"
    return key_phase(last)


def reference(root: Path) -> tuple[dict, dict, float]:
    path = root / "reference"
    t0 = time.time()
    proc = start(path, resume=False)
    _, err = proc.communicate(timeout=900)
    if proc.returncode != 0:
        sys.exit(f"the reference run failed:\n{err[-3000:]}")
    recs = {r["key"]: clean(r) for r in whole_records(path)}
    return recs, json.loads((path / "results.json").read_text()), time.time() - t0


def one_run(path: Path, kills: int, rng: random.Random, ref_keys: list[str], duration: float, log) -> dict:
    """Kill one run `kills` times, resuming after each, then let it finish. Record-count kill points
    pick a phase uniformly first, then a record inside it, so short phases are hit as often as long ones."""
    n_ref = len(ref_keys)
    by_phase: dict[str, list[int]] = {}
    for i, k in enumerate(ref_keys):
        by_phase.setdefault(key_phase(k), []).append(i + 1)
    out = {"kills": 0, "phases": Counter(), "redone": [], "processes": 0}
    resume = False
    while True:
        proc = start(path, resume)
        out["processes"] += 1
        before = len(whole_records(path))
        if out["kills"] < kills:
            mode = rng.choice(["records", "records", "m_step", "time"])
            later = {ph: [n for n in ns if n > before] for ph, ns in by_phase.items()}
            later = {ph: ns for ph, ns in later.items() if ns}
            target = rng.choice(later[rng.choice(sorted(later))]) if later else before
            delay = rng.uniform(0.5, duration)
            t0 = time.time()
            while proc.poll() is None:
                recs = whole_records(path)
                if (mode == "records" and len(recs) >= target) or (mode == "m_step" and in_m_step(path)) or \
                        (mode == "time" and time.time() - t0 >= delay) or (mode == "m_step" and len(recs) >= n_ref - 2):
                    break
                time.sleep(0.02)
            if proc.poll() is None:
                if mode == "records":
                    time.sleep(rng.uniform(0, 0.3))  # land inside the next unit of work, not on its boundary
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                recs = whole_records(path)
                out["kills"] += 1
                out["phases"][phase(path, recs)] += 1
                # a key written twice since the last resume rewrote the file = finished work redone
                out["redone"] += [k for k, n in Counter(r["key"] for r in recs).items() if n > 1]
                log(f"  kill {out['kills']} ({mode}) in {phase(path, recs)}: {len(recs)} records on disk")
                resume = True
                continue
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{path}: a resumed run failed (exit {proc.returncode}):\n{err[-3000:]}")
        break
    return out


def run_adversarial(root: Path, trials: int, rng: random.Random, ref_results: dict, problems: list[str]) -> dict:
    """The cases of `scripts/fault_cases.py`; a non-zero count of harm is a problem."""
    import fault_cases as fc

    finished = root / "reference"
    out = {
        "races": fc.races(root, CONFIG, trials, clean, ref_results, print),
        "forged_records": fc.forged(root, CONFIG, finished, trials, rng, print),
        "edited_inputs": fc.edited_inputs(root, CONFIG, trials, print),
        "bad_configs": fc.bad_configs(root, CONFIG, trials, rng, print),
    }
    harm = {"races": ("duplicated", "both_ran", "failed_otherwise"),
            "forged_records": ("trusted", "file_changed"), "edited_inputs": ("silently_reused",),
            "bad_configs": ("folders_left", "ran_anyway")}
    for case, keys in harm.items():
        for k in keys:
            if out[case].get(k):
                problems.append(f"{case}: {k} = {out[case][k]}")
    expected = {"races": ("refused_with_one_line", "races"), "forged_records": ("refused_with_one_line", "forgeries"),
                "edited_inputs": ("refused_naming_the_file", "edits"), "bad_configs": ("refused_with_one_line", "configs")}
    for case, (ok, total) in expected.items():
        print(f"{case}: {out[case]}")
        if case != "races" and out[case].get(ok, 0) != out[case].get(total, 0):
            problems.append(f"{case}: {out[case].get(ok, 0)} of {out[case].get(total, 0)} refused as promised")
    if out["edited_inputs"].get("redo_equals_fresh", 0) != out["edited_inputs"].get("edits", 0):
        problems.append("edited_inputs: resume_inputs=redo did not give the fresh run's results")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--kills-per-run", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--adversarial", type=int, default=0, help="trials of each case in scripts/fault_cases.py")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="seal_faults_"))
    print(f"work folder {root}")
    ref_recs, ref_results, duration = reference(root)
    print(f"reference run: {len(ref_recs)} records, {duration:.0f} s")
    totals = {"kills": 0, "runs": 0, "processes": 0, "records_checked": 0, "lost": 0, "duplicated": 0,
              "changed": 0, "results_identical": 0, "phases": Counter()}
    problems: list[str] = []
    while totals["kills"] < args.kills:
        i = totals["runs"]
        path = root / f"run{i}"
        print(f"run {i}:")
        res = one_run(path, min(args.kills_per_run, args.kills - totals["kills"]), rng, list(ref_recs), duration,
                      print)
        raw = (path / "records.jsonl").read_text().splitlines()
        keys = [json.loads(x)["key"] for x in raw]
        dup = [k for k, n in Counter(keys).items() if n > 1] + res["redone"]
        recs = {r["key"]: clean(r) for r in whole_records(path)}
        lost = sorted(set(ref_recs) - set(recs))
        changed = sorted(k for k in ref_recs if k in recs and recs[k] != ref_recs[k])
        same = clean(json.loads((path / "results.json").read_text())) == clean(ref_results)
        totals["kills"] += res["kills"]
        totals["runs"] += 1
        totals["processes"] += res["processes"]
        totals["records_checked"] += len(recs)
        totals["lost"] += len(lost)
        totals["duplicated"] += len(dup)
        totals["changed"] += len(changed)
        totals["results_identical"] += same
        totals["phases"].update(res["phases"])
        for what, ks in (("lost", lost), ("duplicated", dup), ("changed", changed)):
            if ks:
                problems.append(f"run {i}: {what}: {ks[:5]}")
        if not same:
            problems.append(f"run {i}: results.json differs from the reference")
        shutil.rmtree(path, ignore_errors=True)
    print()
    print(f"{'phase at kill':<36}{'kills':>6}")
    for ph, n in totals["phases"].most_common():
        print(f"{ph:<36}{n:>6}")
    print(f"\nkills {totals['kills']}, runs {totals['runs']} ({totals['processes']} processes), records checked "
          f"{totals['records_checked']}, lost {totals['lost']}, duplicated {totals['duplicated']}, changed "
          f"{totals['changed']}, results identical {totals['results_identical']}/{totals['runs']}")
    adversarial = run_adversarial(root, args.adversarial, rng, ref_results, problems) if args.adversarial else {}
    for p in problems:
        print("PROBLEM", p)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**totals, "phases": dict(totals["phases"]), "adversarial": adversarial,
                                        "problems": problems,
                                        "reference_records": len(ref_recs), "seed": args.seed,
                                        "command": " ".join(sys.argv)}, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
