"""Held-out accuracy per round of one or more ReST-EM run folders, with standard errors clustered by
passage and the paired bootstrap comparisons of `results.json` (round r against round 0 and round r-1,
against base and the references), recomputed from the records by the functions the run itself uses
(`scripts/rerender.py`, written to a temporary folder, so the run folder is not touched); then the
selection / M-step figures per round. With several folders, each later one is also compared with the
first, paired by held-out passage and by E-step context (same data and seeds, so the same contexts).
Used for the READMEs under experiments/ki_restem_*.

    python scripts/analyse_restem.py experiments/ki_restem_cpu_smollm2 experiments/ki_restem_cpu_binary_smollm2
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics as st
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rerender import rerender  # the same summary as results.json

from seal.eval.stats import compare, format_interval, format_verdict
from seal.infra.config import derive_seed


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines() if line.strip()]


def held_out(recs: dict[str, dict], r: int) -> dict[str, list[float]]:
    """Policy r's held-out self-edit outcomes per passage (sample 0; a skipped edit has no questions here)."""
    return {k.split("/")[3]: [float(q["correct"]) for q in x.get("questions", [])] for k, x in recs.items()
            if k.startswith(f"eval/{r}/self_edit/") and len(k.split("/")) == 4}


def e_step(recs: dict[str, dict], r: int) -> dict[str, list[float]]:
    """Round r's E-step outcomes per training context: every question of every self-edit and seed; an
    unusable self-edit scores 0 on each of the context's questions, as its reward did."""
    out: dict[str, list[float]] = {}
    for k, x in recs.items():
        parts = k.split("/")
        if parts[0] == "estep" and parts[1] == str(r) and len(parts) == 5:
            n = len(recs[f"estep/{r}/base/{parts[2]}"]["questions"])
            out.setdefault(parts[2], []).extend([float(q["correct"]) for q in x["questions"]] if "questions" in x
                                                else [0.0] * n)
    return out


def across_runs(first: str, second: str, seed: int) -> None:
    """second - first, per round, paired by held-out passage and by E-step context (where both runs used the
    same contexts)."""
    a, b = ({x["key"]: x for x in records(Path(f))} for f in (first, second))
    print(f"== {second} - {first}, paired")
    for r in sorted({int(k.split("/")[1]) for k in a if k.startswith("eval/")}):
        for name, part in (("held-out", held_out), ("E-step", e_step)):
            pa, pb = part(a, r), part(b, r)
            if pa and set(pa) == set(pb):
                c = compare(second, first, pa, pb, derive_seed(seed, "bootstrap", "runs", name, r))
                print(f"  round {r} {name}: {format_interval(c)} {format_verdict(c)} ({c['n_clusters']} clusters)")


def main(folders: list[str]) -> None:
    for name in folders:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            results = rerender(name, out=tmp, check=False)
        print(f"== {name}")
        for e in results["rounds"]:
            for cond, v in e["eval"].items():
                print(f"  round {e['round']} {cond}: {v['accuracy']:.3f} ± {v['stderr']:.3f} clustered "
                      f"(± {v['stderr_iid']:.3f} if questions were independent; {v['n_questions']} questions, "
                      f"{v['n_clusters']} passages)")
        for c in results["comparisons"]:
            print(f"  {c['b']} - {c['a']}, paired: {format_interval(c)} {format_verdict(c)}")
        for a in records(Path(name)):
            if a["key"].startswith("select/"):
                e, kept = a["edits"], [x for x in a["edits"] if x["kept"]]
                print(f"  selection {a['round']} ({a['rule']}): {len(e)} edits, mean score "
                      f"{st.fmean(x['score'] for x in e):.3f}, {sum(x['score'] == 0 for x in e)} scored 0; kept "
                      f"{len(kept)}" + (f", mean {st.fmean(x['score'] for x in kept):.3f}, "
                                        f"{sum(x['score'] == 0 for x in kept)} scored 0" if kept else ""))
            elif a["key"].startswith("m_step/"):
                print(f"  m-step {a['round']}: {a.get('steps')} steps, loss {a.get('train_loss')}, "
                      f"{a.get('pairs')} pairs")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
    for later in sys.argv[2:]:
        across_runs(sys.argv[1], later, seed=0)
