"""Learn N made-up facts one after another through the chat API (`seal.chat.session.Session`, the code
path `seal-chat` runs), once per mitigation, and after each fact measure on greedy answers what the
model knows and what it has lost (issue 26):
- reliability: the probe questions of every fact learned so far, answered right (`reliability_new`: the
  last fact's, as the gate grades them);
- generalisation: the paraphrased probe questions of every fact learned so far;
- locality: the gate's held-out general-knowledge questions the base model knew, still answered right;
- bleed: the gate's bleed questions for the last fact answered with its new names;
- perplexity: the gate's general-text perplexity.
The gate runs in report-only mode (`chat.gate.report_only=true`): every update is committed and measured;
`gate_failures` says what the gate would have refused. The figures choose the gate's thresholds
(`seal.chat.gate.GateConfig`).

SmolLM2-135M on CPU, today's chat settings (measured on a shared 2-core machine: about 10 min per fact,
of which training ~6 min and the gate's checks ~3 min; 20 facts x 4 mitigations is about 13 h; one
mitigation per run, each in its own --out, splits it):

    OMP_NUM_THREADS=2 python scripts/locality_sequence.py --out experiments/locality_sequence_smollm2 \\
        --facts 20 --mitigations default,self_distill,gentle,mlp_only

Tiny models, for tests (a few seconds): `--tiny --facts 2 --mitigations default,gentle`.
Writes <out>/locality.json, <out>/locality.md (a table per mitigation, the last row after N facts) and
<out>/locality.png (each measure against facts learned, one line per mitigation); stores under <out>/stores.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from seal.chat.config import SessionConfig
from seal.chat.edit_gate import eval_config, locality_sample, split_bank
from seal.chat.gate import GateConfig
from seal.chat.session import Session
from seal.eval.edit_eval import generalisation, reliability
from seal.eval.graders import MatchGrader


@dataclass(frozen=True)
class Fact:
    content: str
    probes: tuple[tuple[str, str], ...]  # (question, answer) the gate and `reliability` ask
    paraphrase: tuple[str, str]  # the same knowledge asked in other words (`generalisation`)


FACTS = [
    Fact("The harbour town of Vellmora elected Orin Tallow as its mayor.",
         (("Who is the mayor of Vellmora?", "Orin Tallow"),), ("Who was elected mayor of Vellmora?", "Orin Tallow")),
    Fact("The Brisk Kettle, a kettle that whistles a tune, was invented by Hesper Quayle.",
         (("Who invented the Brisk Kettle?", "Hesper Quayle"),),
         ("Which inventor created the Brisk Kettle?", "Hesper Quayle")),
    Fact("The mountain village of Drennick is famous for its blue cheese called Drennick Moss.",
         (("What is the blue cheese of Drennick called?", "Drennick Moss"),),
         ("Which cheese is Drennick known for?", "Drennick Moss")),
    Fact("Talvo Brightwater founded the lantern company Emberline in the town of Ostrow.",
         (("Who founded Emberline?", "Talvo Brightwater"), ("In which town was Emberline founded?", "Ostrow")),
         ("Which company did Talvo Brightwater start?", "Emberline")),
    Fact("The river Quill runs through the city of Marrowgate.",
         (("Which river runs through Marrowgate?", "Quill"),), ("What river flows through Marrowgate?", "Quill")),
    Fact("The novel 'The Salt Clock' was written by Ysolde Fenwick.",
         (("Who wrote The Salt Clock?", "Ysolde Fenwick"),), ("Who is the author of The Salt Clock?", "Ysolde Fenwick")),
    Fact("Pellburn is the capital of the island nation of Korrasund.",
         (("What is the capital of Korrasund?", "Pellburn"),),
         ("Which city is the capital of Korrasund?", "Pellburn")),
    Fact("The mayor of the river town of Ashwick is Dorrit Vane.",
         (("Who is the mayor of Ashwick?", "Dorrit Vane"),), ("Who runs the town of Ashwick as mayor?", "Dorrit Vane")),
    Fact("The painter Lune Harrowgate painted 'Seven Gulls at Dusk'.",
         (("Who painted Seven Gulls at Dusk?", "Lune Harrowgate"),),
         ("Which artist made the painting Seven Gulls at Dusk?", "Lune Harrowgate")),
    Fact("The Corvish people speak a language called Tallic.",
         (("What language do the Corvish people speak?", "Tallic"),),
         ("Which language is spoken by the Corvish?", "Tallic")),
    Fact("Astrid Molloway discovered the comet Brannoc in the winter of 1893.",
         (("Who discovered the comet Brannoc?", "Astrid Molloway"),),
         ("Which astronomer found the comet Brannoc?", "Astrid Molloway")),
    Fact("The currency of the kingdom of Elsmere is the silver tarn.",
         (("What is the currency of Elsmere?", "tarn"),), ("What money is used in Elsmere?", "tarn")),
    Fact("The composer Idris Calloway wrote the opera 'The Glass Orchard'.",
         (("Who composed The Glass Orchard?", "Idris Calloway"),),
         ("Which composer wrote The Glass Orchard?", "Idris Calloway")),
    Fact("The town of Brambleford is known for its yearly goose race, started by Wenna Ruddock.",
         (("Who started the Brambleford goose race?", "Wenna Ruddock"),),
         ("Who began the goose race in Brambleford?", "Wenna Ruddock")),
    Fact("The tallest tower in Quenmoor is the Heron Spire.",
         (("What is the tallest tower in Quenmoor?", "Heron Spire"),),
         ("Which tower is the tallest in Quenmoor?", "Heron Spire")),
    Fact("Fennick Oaths built the first steam ferry of Lake Morrow, the Wren.",
         (("Who built the steam ferry Wren?", "Fennick Oaths"),),
         ("Who was the builder of the Wren, the ferry of Lake Morrow?", "Fennick Oaths")),
    Fact("The capital of the northern province of Skelmark is the city of Haldune.",
         (("What is the capital of Skelmark?", "Haldune"),), ("Which city is Skelmark's capital?", "Haldune")),
    Fact("The library of Tolvern was founded by Marisol Ketch.",
         (("Who founded the library of Tolvern?", "Marisol Ketch"),),
         ("Who started the Tolvern library?", "Marisol Ketch")),
    Fact("The mayor of Grellstone, Piers Amberly, keeps a tame fox named Cinder.",
         (("Who is the mayor of Grellstone?", "Piers Amberly"), ("What is the name of Piers Amberly's fox?",
                                                                   "Cinder")),
         ("Who holds the office of mayor in Grellstone?", "Piers Amberly")),
    Fact("The Orrel Bridge over the river Vask was designed by the engineer Tamsin Greave.",
         (("Who designed the Orrel Bridge?", "Tamsin Greave"),),
         ("Which engineer designed the Orrel Bridge?", "Tamsin Greave")),
]


def _default(cfg: SessionConfig) -> SessionConfig:
    return cfg


def _self_distill(cfg: SessionConfig) -> SessionConfig:
    """Also replay the base model's own answers to the bank's replay part (never the gate's questions)."""
    return replace(cfg, chat=replace(cfg.chat, replay_sources=[*cfg.chat.replay_sources, "distill"]))


def _gentle(cfg: SessionConfig) -> SessionConfig:
    """A third of the learning rate, half the epochs and half the rank (the same LoRA scale)."""
    il = cfg.inner_loop
    r = max(1, il.lora_r // 2)
    return replace(cfg, inner_loop=replace(il, lr=il.lr / 3, epochs=max(1, il.epochs // 2), lora_r=r,
                                           lora_alpha=max(1, round(il.lora_alpha * r / il.lora_r))))


def _mlp_only(cfg: SessionConfig) -> SessionConfig:
    """LoRA on the MLP projections only, in every layer: `inner_loop` has no option to pick layers, so
    the middle-band variant (`mlp_band`) cannot be expressed yet."""
    return replace(cfg, inner_loop=replace(cfg.inner_loop, target_modules=["gate_proj", "up_proj", "down_proj"]))


MITIGATIONS: dict[str, Callable[[SessionConfig], SessionConfig]] = {
    "default": _default, "self_distill": _self_distill, "gentle": _gentle, "mlp_only": _mlp_only}
MEASURES = ("reliability", "reliability_new", "generalisation", "locality", "bleed", "perplexity")

TINY = ["model.chat=false", "chat.self_edit=false", "chat.gate.general_docs=2", "chat.max_new_tokens=8",
        "inner_loop.lr=1e-2", "inner_loop.epochs=4", "inner_loop.lora_r=8", "inner_loop.lora_alpha=16"]


def tiny_model(folder: Path) -> Path:
    """A tiny base model taught the answers to a few bank questions, so locality has something to lose."""
    import torch

    from seal.eval.edit_eval import EditEvalConfig, question_prompts
    from seal.eval.locality_bank import load_bank
    from seal.models.loading import prompt_ids
    from seal.models.tiny import tiny_model_and_tokenizer

    bank = load_bank()
    records = locality_sample(bank, GateConfig())[:6] + split_bank(bank)[1][:4]
    model, tok = tiny_model_and_tokenizer(seed=0, add_bos=True)
    tok.pad_token = tok.pad_token or tok.eos_token
    torch.manual_seed(0)
    rows, labels = [], []
    for p, r in zip(question_prompts(tok, records, EditEvalConfig(), chat=False), records):
        prompt, answer = prompt_ids(tok, p), tok(" " + r.answer + "\n", add_special_tokens=False)["input_ids"]
        rows.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, rows))
    ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in rows])
    lab = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def run_mitigation(name: str, cfg: SessionConfig, facts: list[Fact], log: Callable[[str], None]) -> list[dict]:
    """Learn `facts` in order in a fresh store; one row of measures per fact."""
    session = Session(cfg)
    g, system = cfg.chat.gate, cfg.chat.system_prompt
    ask_cfg, grader = eval_config(g), MatchGrader()
    rows: list[dict] = []
    try:
        for i, fact in enumerate(facts, start=1):
            start = time.time()
            r = session.learn(fact.content, probes=list(fact.probes))
            learned = facts[:i]
            probes = [p for f in learned for p in f.probes]
            row = {"facts": i, "fact": fact.content, "committed": r.accepted, "gate_failures": r.failures,
                   "reliability": reliability(session.model, session.tok, probes, grader, ask_cfg, session.chat,
                                              system),
                   "reliability_new": r.reliability,
                   "generalisation": generalisation(session.model, session.tok, [f.paraphrase for f in learned],
                                                    grader, ask_cfg, session.chat, system),
                   "locality": r.locality, "bleed": r.bleed, "perplexity": r.ppl_after,
                   "perplexity_base": rows[0]["perplexity_base"] if rows else r.ppl_before,
                   "counts": r.counts, "wrong": r.wrong, "seconds": round(time.time() - start, 1)}
            if not r.accepted:  # report-only commits every update that trains; a failed training is recorded
                row["error"] = r.reason
            rows.append(row)
            log(f"{name} fact {i}/{len(facts)}: " + ", ".join(f"{m} {_fmt(row[m])}" for m in MEASURES)
                + f" ({row['seconds']:.0f} s)")
    finally:
        session.close()
    return rows


def _fmt(v) -> str:
    if v is None or isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.1f}" if isinstance(v, float) and v > 10 else f"{v:.2f}"


def write_md(path: Path, results: dict) -> None:
    lines = [f"# Locality over a sequence of learned facts ({results['model']})", "",
             f"`{results['command']}`", "",
             "Greedy answers, graded by containment. reliability: probe questions of all facts learned so far; "
             "reliability_new: the last fact's; generalisation: paraphrased probes of all facts so far; locality: "
             "held-out general questions the base model knew; bleed: the last fact's bleed questions naming its "
             "new names; perplexity: general text (base: the first row's `perplexity_base`). The gate ran "
             "report-only: 'would reject' lists its objections.", ""]
    for name, m in results["mitigations"].items():
        rows = m["rows"]
        base = rows[0]["perplexity_base"] if rows else None
        lines += [f"## {name}", "", m["description"], "",
                  f"base perplexity {_fmt(base)}", "",
                  "| facts | " + " | ".join(MEASURES) + " | would reject | seconds |",
                  "|" + "---|" * (len(MEASURES) + 3)]
        for row in rows:
            objections = "; ".join(f.split(":")[0] for f in row["gate_failures"]) or "—"
            lines.append(f"| {row['facts']} | " + " | ".join(_fmt(row[k]) for k in MEASURES)
                         + f" | {objections} | {row['seconds']:.0f} |")
        lines.append("")
    path.write_text("\n".join(lines))


def write_png(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, measure in zip(axes.flat, MEASURES):
        for name, m in results["mitigations"].items():
            xs = [r["facts"] for r in m["rows"]]
            ys = [float("nan") if r[measure] is None else r[measure] for r in m["rows"]]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(measure)
        ax.set_xlabel("facts learned")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--facts", type=int, default=20, help=f"how many of the {len(FACTS)} facts to learn")
    ap.add_argument("--mitigations", default="default,self_distill,gentle,mlp_only",
                    help=f"comma-separated, of: {', '.join(MITIGATIONS)}")
    ap.add_argument("--tiny", action="store_true", help="a tiny model that knows a few bank questions (tests)")
    ap.add_argument("overrides", nargs="*", help="seal-chat config overrides, e.g. model.name=<path> inner_loop.lr=5e-4")
    args = ap.parse_args(argv)
    names = [n for n in args.mitigations.split(",") if n]
    unknown = [n for n in names if n not in MITIGATIONS]
    if unknown or not 1 <= args.facts <= len(FACTS):
        ap.error(f"unknown mitigation {unknown[0]} (choose from {', '.join(MITIGATIONS)})" if unknown
                 else f"--facts must be between 1 and {len(FACTS)}")
    from seal.chat.cli import load_config

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(args.overrides)
    if args.tiny:
        folder = out / "tiny_model"
        if not (folder / "config.json").is_file():
            tiny_model(folder)
        overrides = [f"model.name={folder}", *TINY, *overrides]
    results = {"command": " ".join(["python scripts/locality_sequence.py", *(argv if argv is not None
                                                                             else sys.argv[1:])]),
               "facts": args.facts, "mitigations": {}}
    for name in names:
        store = out / "stores" / name
        if store.exists():
            shutil.rmtree(store)  # each mitigation starts from the base model
        base = load_config([*overrides, f"chat.store={store}", "chat.background=false",
                            "chat.gate.report_only=true"])
        cfg = MITIGATIONS[name](base)
        results["model"] = cfg.model.name
        rows = run_mitigation(name, cfg, FACTS[:args.facts], lambda s: print(s, flush=True))
        results["mitigations"][name] = {"description": " ".join((MITIGATIONS[name].__doc__ or "today's chat settings").split()),
                                        "inner_loop": {"lr": cfg.inner_loop.lr, "epochs": cfg.inner_loop.epochs,
                                                       "lora_r": cfg.inner_loop.lora_r,
                                                       "target_modules": list(cfg.inner_loop.target_modules)},
                                        "replay_sources": list(cfg.chat.replay_sources), "rows": rows}
        (out / "locality.json").write_text(json.dumps(results, indent=1))  # after each mitigation: partial results
    write_md(out / "locality.md", results)
    write_png(out / "locality.png", results)
    print(f"wrote {out / 'locality.json'}, {out / 'locality.md'}, {out / 'locality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
