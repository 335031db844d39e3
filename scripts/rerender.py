"""Re-render finished runs from their records: `results.json`, `report.md` and the plots are rewritten
by the same summary and report functions the live run calls, from `config.yaml` + `records.jsonl`.
No model is loaded and nothing is rerun; `records.jsonl` and `config.yaml` are not touched.

    python scripts/rerender.py experiments/ki_restem_cpu_smollm2 experiments/ki_restem_cpu_binary_smollm2 \
        experiments/ki_demo_smollm2 experiments/arc_demo_smollm2 experiments/ki_eval_fictional_smollm2 \
        experiments/ki_eval_squad_smollm2 experiments/ki_cpt_smollm2/*/

Recipes: restem, arc_restem, ki_eval, ki_cpt. Relative data paths in a config (`../shared/data/seal/...`)
are read from the repository root, as `seal` reads them. Config keys the current code no longer has (a
run recorded by older code) are listed and ignored: nothing is rerun, so they only matter where a report
prints a setting. A run whose re-rendered accuracies differ from those in its current
`results.json` is refused (nothing of it is written) and the script exits 1: a re-render may change
standard errors and add comparisons, never a measured accuracy.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import tempfile
from dataclasses import is_dataclass
from pathlib import Path
from typing import get_type_hints

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from seal.cli import recipe_config, recipes
from seal.infra.records_file import read_records
from seal.infra.run_dir import RunDir


def read_run(folder: Path, out: Path | None = None) -> RunDir:
    """A read-only view of a run folder's records (RunDir would rewrite records.jsonl and run.json);
    what the summary writes goes to `out` (default: the folder itself). The records are verified as a
    resume verifies them (`seal.infra.records_file.read_records`)."""
    records, _, _ = read_records(folder / "records.jsonl")
    rd = RunDir.__new__(RunDir)
    rd.path, rd.records = Path(out or folder), records
    rd.config = yaml.safe_load((folder / "config.yaml").read_text())
    rd.meta = {}
    return rd


def typed_config(raw: dict):
    """(typed config, recipe) as the CLI builds it; runs from before `experiment.recipe` existed name
    their experiment, whose config names the recipe."""
    raw = {**raw, "experiment": dict(raw["experiment"])}
    if not raw["experiment"].get("recipe"):
        exp = yaml.safe_load((REPO / "seal" / "configs" / "experiment" / f"{raw['experiment']['name']}.yaml").read_text())
        raw["experiment"]["recipe"] = exp["experiment"]["recipe"]
    if raw["experiment"]["recipe"] not in RENDERERS:
        raise ValueError(f"recipe '{raw['experiment']['recipe']}' has no re-render (supported: {', '.join(RENDERERS)})")
    cls, _ = recipes()[raw["experiment"]["recipe"]]
    known, dropped = _known_keys(cls, {k: v for k, v in raw.items() if k not in ("experiment", "resume",
                                                                                 "force_resume", "hydra")})
    if dropped:
        print(f"note: config keys the current code no longer has, ignored for the re-render: {', '.join(dropped)}",
              file=sys.stderr)
    cfg, _ = recipe_config({**known, "experiment": raw["experiment"]})
    return cfg, raw["experiment"]["recipe"]


def _known_keys(cls, body: dict, where: str = "") -> tuple[dict, list[str]]:
    """The config without keys the dataclass no longer has (a run recorded by older code), and those keys.
    Nothing is rerun, so a removed setting only matters where the report prints it."""
    hints = get_type_hints(cls)
    out, dropped = {}, []
    for k, v in body.items():
        if k not in hints:
            dropped.append(where + k)
            continue
        if is_dataclass(hints[k]) and isinstance(v, dict):
            v, more = _known_keys(hints[k], v, f"{where}{k}.")
            dropped += more
        out[k] = v
    return out, dropped


# ------------------------------------------------------------------------------------------ recipes

def _restem(cfg, rd: RunDir, domain, held_out: list, k: int) -> dict:
    from seal.infra.sample_records import read_samples
    from seal.rl.config import LoopSettings
    from seal.rl.report import eval_conditions, eval_summary, summarise, write_report

    oc = cfg.restem
    rounds = [r for r in range(oc.rounds + 1) if read_samples(rd, rd.key("eval", r, "completions"))]
    evals = {r: eval_summary(domain, rd, r, held_out, oc.eval_samples, eval_conditions(domain, oc, r))
             for r in rounds}
    results = summarise(rd, evals, seed=cfg.seed, domain=domain)
    write_report(domain, LoopSettings.of(cfg, k=k), rd, results)
    return results


def render_restem(cfg, rd: RunDir, old: dict) -> dict:
    from seal.data.sources import load_passages
    from seal.recipes.restem import domain as knowledge_domain

    held_out = load_passages(cfg.eval_data)[: cfg.restem.eval_passages]
    return _restem(cfg, rd, knowledge_domain(cfg), held_out, cfg.self_edit.k)


def render_arc(cfg, rd: RunDir, old: dict) -> dict:
    from seal.domains.arc.data import load_tasks
    from seal.domains.arc.domain import ARCDomain

    held_out = load_tasks(cfg.arc_eval_data)[: cfg.restem.eval_passages]
    return _restem(cfg, rd, ARCDomain(cfg), held_out, cfg.arc.k)


def render_ki_eval(cfg, rd: RunDir, old: dict) -> dict:
    """Usable passages are those with a base record; the reasons others were skipped (too long for the
    model's tokenizer, which is not loaded here) are carried over from the previous results.json."""
    from seal.data.sources import load_passages
    from seal.recipes import ki_eval

    passages = load_passages(cfg.data)
    usable = [p for p in passages if rd.has(rd.key("base", p.uid))]
    reasons = {s["passage"]: s["reason"] for s in old.get("skipped", []) if "condition" not in s}
    skipped = [{"passage": p.uid, "reason": reasons.get(p.uid, "not trained (no base record)")}
               for p in passages if not rd.has(rd.key("base", p.uid))]
    results = ki_eval.summarise(cfg, rd, usable, skipped, {p.uid: p for p in usable})
    ki_eval.write_report(cfg, rd, results)
    return results


def render_ki_cpt(cfg, rd: RunDir, old: dict) -> dict:
    """Conditions in the order the run did them; passages too long to train on are carried over from
    the previous results.json (finding them needs the tokenizer)."""
    from seal.recipes import ki_cpt

    done = [key.split("/", 1)[1] for key in rd.records if key.startswith("cpt/")]
    order = ["base", "passage"] + [c for c in done if c not in ("base", "passage")]
    results = ki_cpt.summarise(cfg, rd, [c for c in order if c in done], old.get("skipped_passages", {}),
                               cost=ki_cpt.recorded_costs(cfg, rd))
    ki_cpt._report(cfg, rd, results)
    return results


RENDERERS = {"restem": render_restem, "arc_restem": render_arc, "ki_eval": render_ki_eval, "ki_cpt": render_ki_cpt}


# ------------------------------------------------------------------------------------------ the command

def accuracies(results: dict) -> dict[str, float]:
    return {name: c["accuracy"] for name, c in results["conditions"].items()}


def same_accuracies(old: dict, new: dict) -> list[str]:
    """Conditions whose accuracy differs (or exists on one side only)."""
    a, b = accuracies(old), accuracies(new)
    return [c for c in sorted(set(a) | set(b)) if c not in a or c not in b
            or not (a[c] == b[c] or (math.isnan(a[c]) and math.isnan(b[c])) or abs(a[c] - b[c]) < 1e-12)]


def rerender(folder: str | Path, out: str | Path | None = None, check: bool = True) -> dict:
    """Re-render `folder` into `out` (default: in place, after the accuracy check passed)."""
    folder = Path(folder).resolve()
    old_path = folder / "results.json"
    old = json.loads(old_path.read_text()) if old_path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        rd = read_run(folder, out=Path(tmp))
        cfg, recipe = typed_config(rd.config)
        with contextlib.chdir(REPO):  # relative data paths, as `seal` reads them from the repository root
            results = RENDERERS[recipe](cfg, rd, old)
        if check and old and (changed := same_accuracies(old, results)):
            raise ValueError(f"{folder}: re-rendered accuracies differ for {', '.join(changed)}; nothing written")
        dest = Path(out or folder)
        dest.mkdir(parents=True, exist_ok=True)
        for f in Path(tmp).iterdir():
            shutil.copy2(f, dest / f.name)
    return results


def main(folders: list[str]) -> int:
    failed = 0
    for folder in folders:
        try:
            results = rerender(folder)
        except (ValueError, OSError) as e:
            print(f"refused: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"re-rendered {folder}: {len(results.get('comparisons', []))} paired comparisons")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
