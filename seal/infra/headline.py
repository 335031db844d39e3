"""A run's headline, read from its `results.json`: the one number a sweep optimises, and the figures
(with their intervals) and plot points that `seal compare` puts side by side.

Each recipe writes results.json in its own shape, so each has an entry in three name -> function tables:
`METRIC` (the dotted path of its default objective, chosen from the results, since condition names depend
on the config), `FIGURES` (the table's numbers) and `POINTS` (what the comparison plot draws). A new recipe
adds one line to each; one without entries still runs and sweeps, with `sweep_metric=<dotted path>` set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from seal.infra.config import ConfigError


@dataclass(frozen=True)
class Figure:
    """One headline number: `stderr` is the clustered standard error the recipe wrote, `ci95` a 95%
    interval (a paired bootstrap's); either may be missing."""
    name: str
    value: float | None
    stderr: float | None = None
    ci95: tuple[float, float] | None = None

    def text(self) -> str:
        if self.value is None or self.value != self.value:
            return "—"
        if self.ci95 is not None and None not in self.ci95:
            return f"{self.value:+.3f} [{self.ci95[0]:+.3f}, {self.ci95[1]:+.3f}]"
        return f"{self.value:.3f}" + (f" ± {self.stderr:.3f}" if self.stderr is not None else "")


# ------------------------------------------------------------------------------------- the default metric


def _last(d: dict) -> str:
    if not d:
        raise ConfigError("results.json has no conditions to take a headline from (set sweep_metric=<dotted path>)")
    return list(d)[-1]


def _co_llm(r: dict) -> list[str]:
    """ki_decoding: the Co-LLM condition at the configured deferral threshold (`chosen:`), else the last
    Co-LLM one, else the last condition that is not the oracle's ceiling."""
    conds = r["conditions"]
    co = [c for c in conds if c.startswith("co_llm(")]
    chosen = [c for c in co if "chosen:" in c]
    pick = (chosen or co or [_last({c: v for c, v in conds.items() if c != "oracle routing"})])[-1]
    return ["conditions", pick, "mean"]


def _tool_use(r: dict) -> list[str]:
    """tool_use: exact-call accuracy of the learned condition (`online`, else the last) at the most examples."""
    conds = r["conditions"]
    cond = "online" if "online" in conds else _last(conds)
    return ["conditions", cond, max(conds[cond], key=int), "exact"]


# recipe -> the path (keys into results.json) of its default sweep objective
METRIC: dict[str, Callable[[dict], list[str]]] = {
    "ki_eval": lambda r: ["conditions", _last(r["conditions"]), "accuracy"],  # the last condition: self-edits
    "ki_cpt": lambda r: ["conditions", _last(r["conditions"]), "accuracy"],
    "restem": lambda r: ["final", "self_edit", "accuracy"],  # the final policy's held-out accuracy
    "arc_restem": lambda r: ["final", "self_edit", "accuracy"],
    "ki_continual": lambda r: ["variants", _last(r["variants"]), "retained"],
    "ki_decoding": _co_llm,
    "tool_use": _tool_use,
}


def metric_path(recipe: str, results: dict, override: str | None = None) -> list[str]:
    """The keys leading to the sweep objective: `override` (a dotted path, `sweep_metric=`) read against
    the results (a key may itself hold dots: `conditions.proxy(alpha=0.5).A`), else the recipe's default."""
    if override:
        return _split(results, override)
    if recipe not in METRIC:
        raise ConfigError(f"sweep_metric: recipe '{recipe}' has no default headline; set sweep_metric=<dotted path "
                          f"into results.json>")
    return METRIC[recipe](results)


def metric_value(results: dict, path: list[str]) -> float:
    """The number at `path`; None (a figure the run could not compute) is NaN."""
    value = _at(results, path)
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"sweep_metric={'.'.join(path)}: results.json holds {type(value).__name__} there, not a "
                          f"number")
    return float(value)


def _split(results: dict, dotted: str) -> list[str]:
    """`dotted` as keys, matching the longest key at each level."""
    keys, node, rest = [], results, dotted
    while rest:
        if not isinstance(node, dict):
            raise ConfigError(f"sweep_metric={dotted}: '{'.'.join(keys)}' is a value, it has no '{rest}'")
        hits = [k for k in node if rest == k or rest.startswith(k + ".")]
        if not hits:
            shown = ", ".join(list(node)[:12]) + (" ..." if len(node) > 12 else "")
            where = f"under '{'.'.join(keys)}'" if keys else "at the top"
            raise ConfigError(f"sweep_metric={dotted}: results.json has no '{rest.split('.')[0]}' {where} "
                              f"(it has: {shown})")
        key = max(hits, key=len)
        keys.append(key)
        node, rest = node[key], rest[len(key) + 1:]
    return keys


def _at(results: dict, path: list[str]):
    node = results
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"sweep_metric: results.json has no '{'.'.join(path[: i + 1])}'")
        node = node[key]
    return node


# ------------------------------------------------------------------------------- figures and plot points


def _accuracies(r: dict) -> list[Figure]:
    conds = r.get("conditions", {})
    return ([Figure(c, v.get("accuracy"), v.get("stderr")) for c, v in conds.items()]
            + [Figure(f"{c} locality", v["locality"]) for c, v in conds.items() if v.get("locality") is not None])


def _rounds(r: dict) -> list[Figure]:
    out = [Figure(f"final {c}", v.get("accuracy"), v.get("stderr")) for c, v in r.get("final", {}).items()]
    h = r.get("paired", {}).get("final_minus_round0")
    if h:
        out.append(Figure("final − round 0", h["mean"], ci95=tuple(h["ci95"])))
    last = (r.get("rounds") or [{}])[-1].get("locality") or {}
    if last.get("policy") is not None:
        out.append(Figure("final policy locality", last["policy"]))
    return out


def _continual(r: dict) -> list[Figure]:
    out = []
    for name, v in r.get("variants", {}).items():
        out.append(Figure(f"{name} retained", v.get("retained")))
        if v.get("locality_after_last") is not None:
            out.append(Figure(f"{name} locality", v["locality_after_last"]))
        held = v.get("held_vs_reference")
        if held and held.get("held") is not None:
            ci = held.get("ci95")
            out.append(Figure(f"{name} held", held["held"], ci95=tuple(ci) if ci and None not in ci else None))
    return out


def _decoding(r: dict) -> list[Figure]:
    """Each condition's mean of its accuracies on sets A and B; A and B are disjoint passages, so the
    mean's standard error is half the root of the sum of their squared clustered errors."""
    out = []
    for c, v in r.get("conditions", {}).items():
        se = 0.5 * math.hypot(v["A_stderr"], v["B_stderr"]) if "A_stderr" in v and "B_stderr" in v else None
        out.append(Figure(c, v.get("mean"), se))
    return out


def _tool_figures(r: dict) -> list[Figure]:
    """Exact-call accuracy per condition at its most examples, with the binomial standard error the
    recipe's report gives (the test requests are independent)."""
    n_test, out = r.get("test") or 0, []
    for cond, by_n in r.get("conditions", {}).items():
        n = max(by_n, key=int)
        p = by_n[n]["exact"]
        out.append(Figure(f"{cond} ({n} examples)", p, (p * (1 - p) / n_test) ** 0.5 if n_test > 1 else None))
    return out


FIGURES: dict[str, Callable[[dict], list[Figure]]] = {
    "ki_eval": _accuracies, "ki_cpt": _accuracies, "restem": _rounds, "arc_restem": _rounds,
    "ki_continual": _continual, "ki_decoding": _decoding, "tool_use": _tool_figures,
}


def _round_points(r: dict) -> list[tuple]:
    return [(e["round"], e["eval"]["self_edit"]["accuracy"], e["eval"]["self_edit"].get("stderr"))
            for e in r.get("rounds", []) if "self_edit" in e.get("eval", {})]


def _condition_points(r: dict, recipe: str) -> list[tuple]:
    """The plot's points: the headline scores, not the locality figures (another scale of what is measured)."""
    return [(f.name, f.value, f.stderr) for f in FIGURES[recipe](r) if f.ci95 is None and not f.name.endswith("locality")]


# recipe -> (what the plot's x axis is, its points: (x, value, standard error or None))
POINTS: dict[str, tuple[str, Callable[[dict], list[tuple]]]] = {
    "restem": ("round", _round_points), "arc_restem": ("round", _round_points),
    **{name: ("condition", lambda r, name=name: _condition_points(r, name))
       for name in ("ki_eval", "ki_cpt", "ki_continual", "ki_decoding", "tool_use")},
}
