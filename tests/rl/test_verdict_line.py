"""The one-line verdict that ends a ReST-EM report."""

from seal.rl.report import verdict_line


def results(lo: float, hi: float, n: int, verdict: str) -> dict:
    return {"rounds": [{"round": 0}, {"round": 1}],
            "paired": {"final_minus_round0": {"mean": (lo + hi) / 2, "ci95": [lo, hi], "verdict": verdict,
                                              "n_clusters": n}}}


def test_an_interval_that_excludes_zero_over_too_few_passages_says_why_it_is_not_called():
    line = verdict_line(results(-0.49, -0.05, 8, "within noise"))
    assert "[-0.490, -0.050]" in line and "within noise (fewer than 10 passages: too few to call)" in line


def test_enough_passages_give_the_plain_verdict():
    line = verdict_line(results(0.02, 0.10, 80, "improvement"))
    assert line.endswith("paired over 80 passages): improvement.") and "too few" not in line


def test_a_run_with_only_round_0_has_no_verdict():
    assert verdict_line({"rounds": [{"round": 0}]}).startswith("No verdict")
