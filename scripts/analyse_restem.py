"""Held-out accuracy per round of one or more ReST-EM run folders, with the paired difference of
every round against round 0 (same questions, so the question-to-question spread cancels), and the
selection / M-step figures per round. Used for the READMEs under experiments/ki_restem_*.

    python scripts/analyse_restem.py experiments/ki_restem_cpu_smollm2 experiments/ki_restem_cpu_binary_smollm2
"""

from __future__ import annotations

import json
import math
import statistics as st
import sys
from pathlib import Path


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines() if line.strip()]


def held_out(recs: list[dict], r: int) -> dict[tuple[str, int], float]:
    """Correctness per held-out question of policy r's self-edits."""
    return {(a["passage"], q["q"]): float(q["correct"]) for a in recs
            if a["key"].startswith(f"eval/{r}/self_edit/") for q in a.get("questions", [])}


def mean_se(values: list[float]) -> tuple[float, float]:
    return st.fmean(values), (st.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def main(folders: list[str]) -> None:
    for name in folders:
        recs = records(Path(name))
        print(f"== {name}")
        rounds = sorted({int(a["key"].split("/")[1]) for a in recs if a["key"].startswith("eval/")})
        per = {r: held_out(recs, r) for r in rounds}
        for r in rounds:
            m, se = mean_se(list(per[r].values()))
            print(f"  round {r}: {m:.3f} ± {se:.3f} (n={len(per[r])})")
        for r in rounds[1:]:
            keys = sorted(set(per[0]) & set(per[r]))
            d = [per[r][k] - per[0][k] for k in keys]
            m, se = mean_se(d)
            print(f"  round {r} - round 0, paired: {m:+.3f} ± {se:.3f} "
                  f"(won {sum(x > 0 for x in d)}, lost {sum(x < 0 for x in d)}, n={len(d)})")
        for a in recs:
            if a["key"].startswith("select/"):
                e, kept = a["edits"], [x for x in a["edits"] if x["kept"]]
                print(f"  selection {a['round']} ({a['rule']}): {len(e)} edits, mean score "
                      f"{st.fmean(x['score'] for x in e):.3f}, {sum(x['score'] == 0 for x in e)} scored 0; kept "
                      f"{len(kept)}" + (f", mean {st.fmean(x['score'] for x in kept):.3f}, "
                                        f"{sum(x['score'] == 0 for x in kept)} scored 0" if kept else ""))
            elif a["key"].startswith("m_step/"):
                print(f"  m-step {a['round']}: {a.get('steps')} steps, loss {a.get('train_loss')}, {a.get('pairs')} pairs")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
