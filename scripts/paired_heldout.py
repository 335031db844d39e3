"""Two ReST-EM runs with the same held-out passages, paired per round: each run's held-out self-edit
accuracy (± passage-clustered SE) and the difference with its 95 % paired bootstrap interval over
passages (`seal.eval.stats.compare`, the run's own functions). Reads records.jsonl lines as JSON without
verifying checksums, so runs older than the checksums (which `scripts/analyse_restem.py` refuses) can be
compared too; an unusable self-edit counts as all its questions wrong, as the report does.

    python scripts/paired_heldout.py experiments/ki_restem_cpu_binary_smollm2 experiments/ki_restem_hp_smollm2 --rounds 0 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seal.eval.stats import clustered_mean_se, compare, format_interval  # noqa: E402


def held_out(folder: Path, r: int) -> dict[str, list[float]]:
    recs = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines() if line.strip()]
    n_questions = {d["passage"]: len(d["questions"]) for d in recs if d["key"].startswith("eval/0/base/")}
    return {d["passage"]: ([float(q["correct"]) for q in d["questions"]] if "questions" in d
                           else [0.0] * n_questions[d["passage"]])
            for d in recs if d["key"].startswith(f"eval/{r}/self_edit/")}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="the run compared against")
    ap.add_argument("b", type=Path)
    ap.add_argument("--rounds", type=int, nargs="+", default=[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"| policy | {args.a.name} | {args.b.name} | {args.b.name} − {args.a.name} |\n|---|---|---|---|")
    for r in args.rounds:
        a, b = held_out(args.a, r), held_out(args.b, r)
        if set(a) != set(b):
            sys.exit(f"round {r}: the runs' held-out passages differ ({len(set(a) ^ set(b))} not in both)")
        cells = [f"{m:.3f} ± {se:.3f}" for m, se in (clustered_mean_se(list(x.values())) for x in (a, b))]
        c = compare(f"round {r} b", f"round {r} a", a, b, seed=args.seed)
        print(f"| {r} | {cells[0]} | {cells[1]} | {format_interval(c)}: {c['verdict']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
