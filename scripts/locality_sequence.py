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

SmolLM2-135M on CPU, today's chat settings: about 10 min per fact on a shared 2-core machine (training
~6 min, the gate's checks ~3 min), so 20 facts x 4 mitigations is about 13 h. Run one mitigation per
invocation into the same --out; each fact's row is appended to <out>/rows_<mitigation>.jsonl as it is
measured and the store keeps the learned facts, so the same command after a stop continues after the last
measured fact (--fresh starts a mitigation again):

    OMP_NUM_THREADS=2 python scripts/locality_sequence.py --out experiments/locality_smollm2 \\
        --facts 20 --mitigations default        # then self_distill, gentle, mlp_band

Tiny models, for tests (a few seconds): `--tiny --facts 2 --mitigations default,gentle`.
Writes <out>/locality.json, <out>/locality.md (a table per mitigation, the last row after N facts) and
<out>/locality.png (each measure against facts learned, one line per mitigation), from every mitigation
measured under <out>; the stores under <out>/stores (not committed: they are large).
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


# every mitigation changes the chat's settings from before issue 26 (today's seal-chat defaults are scoped_strong's)
BEFORE = ["chat.memory=merged", "inner_loop.lr=2e-3", "inner_loop.epochs=10", "chat.stop_on_probes=false"]


def _default(cfg: SessionConfig) -> SessionConfig:
    """The chat's settings before issue 26: every update merged into the weights (chat.memory=merged), lr 2e-3,
    10 epochs."""
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


def _early_stop(cfg: SessionConfig) -> SessionConfig:
    """Today's settings, training ending after the first epoch at which the fact's probes are answered right."""
    return replace(cfg, chat=replace(cfg.chat, stop_on_probes=True))


def _distill_early(cfg: SessionConfig) -> SessionConfig:
    """self_distill and early_stop together: the base model's own answers replayed, training ending once the
    fact's probes are answered."""
    return _early_stop(_self_distill(cfg))


def _distill_heavy(cfg: SessionConfig) -> SessionConfig:
    """Three quarters of every step's tokens replay earlier facts and the base model's own answers to general
    questions (no general text, no everyday replies), up to twice the epochs, ending once the probes are
    answered: the fact gets a quarter of the tokens, so a step moves the model less."""
    c = replace(cfg.chat, replay_sources=["accepted", "distill"], replay_fraction=0.75, stop_on_probes=True)
    return replace(cfg, chat=c, inner_loop=replace(cfg.inner_loop, epochs=2 * cfg.inner_loop.epochs))


def _gentle_early(cfg: SessionConfig) -> SessionConfig:
    """gentle's lr and rank, up to twice today's epochs, ending once the probes are answered: the smallest
    update at a low lr that makes the fact recallable."""
    g = _gentle(cfg)
    return replace(g, chat=replace(g.chat, stop_on_probes=True),
                   inner_loop=replace(g.inner_loop, epochs=2 * cfg.inner_loop.epochs))


def _scoped(cfg: SessionConfig) -> SessionConfig:
    """default's training, each fact's adapter kept apart and used only for prompts that name the fact's names
    (chat.memory=scoped, the chat's default since this experiment: a scope router, as SERAC, GRACE and WISE
    route edits)."""
    return replace(cfg, chat=replace(cfg.chat, memory="scoped"))


def _scoped_early(cfg: SessionConfig) -> SessionConfig:
    """scoped, with up to twice the epochs, training ending once the fact's probes are answered: routing keeps the
    adapter away from other questions, so it can train until the fact is recalled."""
    s = _scoped(cfg)
    return replace(s, chat=replace(s.chat, stop_on_probes=True),
                   inner_loop=replace(s.inner_loop, epochs=2 * cfg.inner_loop.epochs))


def _scoped_strong(cfg: SessionConfig) -> SessionConfig:
    """scoped_early at twice the learning rate: a fact the routed adapter has not learned in today's steps gets
    larger ones; other prompts never see the adapter."""
    s = _scoped_early(cfg)
    return replace(s, inner_loop=replace(s.inner_loop, lr=2 * cfg.inner_loop.lr))


def _mlp_only(cfg: SessionConfig) -> SessionConfig:
    """LoRA on the MLP projections only, in every layer."""
    return replace(cfg, inner_loop=replace(cfg.inner_loop, target_modules=["gate_proj", "up_proj", "down_proj"]))


def _mlp_band(cfg: SessionConfig) -> SessionConfig:
    """LoRA on the MLP projections of a band of early-middle decoder layers only (10 % to 35 % of the depth,
    where MEMIT edits GPT-J's facts: layers 3-8 of 28), with the rank's LoRA scale kept."""
    n = decoder_layers(cfg)
    band = list(range(max(0, round(0.10 * n)), max(1, round(0.35 * n))))
    return replace(cfg, inner_loop=replace(cfg.inner_loop, target_modules=["gate_proj", "up_proj", "down_proj"],
                                           layers_to_transform=band))


def decoder_layers(cfg: SessionConfig) -> int:
    from transformers import AutoConfig

    from seal.models.loading import model_folder

    return AutoConfig.from_pretrained(model_folder(cfg.model)).num_hidden_layers


MITIGATIONS: dict[str, Callable[[SessionConfig], SessionConfig]] = {
    "default": _default, "self_distill": _self_distill, "gentle": _gentle, "mlp_band": _mlp_band,
    "mlp_only": _mlp_only, "early_stop": _early_stop,
    "distill_early": _distill_early, "distill_heavy": _distill_heavy,
    "gentle_early": _gentle_early, "scoped": _scoped,
    "scoped_early": _scoped_early, "scoped_strong": _scoped_strong}
MEASURES = ("reliability", "reliability_new", "generalisation", "locality", "bleed", "perplexity")

TINY = ["model.chat=false", "chat.self_edit=false", "chat.gate.general_docs=2", "chat.max_new_tokens=8",
        "inner_loop.lr=1e-2", "inner_loop.epochs=4", "inner_loop.lora_r=8", "inner_loop.lora_alpha=16"]


def tiny_model(folder: Path) -> Path:
    """A tiny base model taught the answers to a few bank questions, so locality has something to lose."""
    from seal.eval.edit_eval import EditEvalConfig, question_prompts
    from seal.eval.locality_bank import load_bank
    from seal.models.teaching import teach
    from seal.models.tiny import tiny_model_and_tokenizer

    bank = load_bank()
    records = locality_sample(bank, GateConfig())[:6] + split_bank(bank)[1][:4]
    model, tok = tiny_model_and_tokenizer(seed=0, add_bos=True)
    tok.pad_token = tok.pad_token or tok.eos_token
    teach(model, tok, question_prompts(tok, records, EditEvalConfig(), chat=False), [r.answer for r in records])
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def run_mitigation(name: str, cfg: SessionConfig, facts: list[Fact], log: Callable[[str], None],
                   rows_file: Path | None = None, rows: list[dict] | None = None,
                   stop_after: int | None = None) -> list[dict]:
    """Learn `facts` in order; one row of measures per fact, appended to `rows_file` as it is measured.
    `rows`: the rows of an earlier run of this mitigation whose store (HEAD after their last fact) this
    session continues from: those facts are not learned again. `stop_after`: learn at most this many here."""
    session = Session(cfg)
    g, system = cfg.chat.gate, cfg.chat.system_prompt
    ask_cfg, grader = eval_config(g), MatchGrader()
    rows = list(rows or [])
    last = len(facts) if stop_after is None else min(len(facts), len(rows) + stop_after)
    try:
        for i, fact in enumerate(facts, start=1):
            if i <= len(rows):
                continue
            if i > last:
                break
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
            if rows_file is not None:
                with rows_file.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            log(f"{name} fact {i}/{len(facts)}: " + ", ".join(f"{m} {_fmt(row[m])}" for m in MEASURES)
                + f" ({row['seconds']:.0f} s)")
    finally:
        session.close()
    return rows


def rows_path(out: Path, name: str) -> Path:
    return out / f"rows_{name}.jsonl"


def settings_path(out: Path, name: str) -> Path:
    return out / f"settings_{name}.json"


def prepare(out: Path, name: str, cfg: SessionConfig, settings: dict, facts: list[Fact], fresh: bool) -> list[dict]:
    """The rows already measured for mitigation `name` under `out`, with its store's HEAD moved back to the
    last of them (a fact learned but not yet measured when a run stopped is learned again); [] and a
    fresh store when there are none or `fresh`. Refuses (SystemExit naming the file) rows measured with
    other settings or facts."""
    from seal.chat.adapter_store import AdapterStore

    rows_file, store_dir = rows_path(out, name), out / "stores" / name
    if fresh or not rows_file.is_file():
        shutil.rmtree(store_dir, ignore_errors=True)
        rows_file.unlink(missing_ok=True)
        settings_path(out, name).write_text(json.dumps(settings, indent=1))
        return []
    earlier = json.loads(settings_path(out, name).read_text()) if settings_path(out, name).is_file() else {}
    keys = ("model", "inner_loop", "replay_sources", "chat")
    if {k: earlier.get(k) for k in keys} != {k: settings[k] for k in keys}:
        raise SystemExit(f"{rows_file}: measured with other settings ({settings_path(out, name)}); "
                         f"pass --fresh to start {name} again")
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        if i >= len(facts) or row.get("fact") != facts[i].content:
            raise SystemExit(f"{rows_file}: row {i + 1} is not fact {i + 1} of this run; pass --fresh to start again")
    store = AdapterStore(store_dir, cfg.model.name)
    chain = store.chain(store.head())
    committed = sum(1 for r in rows if r["committed"])
    if len(chain) < committed:
        raise SystemExit(f"{store_dir}: {len(chain)} version(s) on HEAD's chain but {rows_file} records {committed} "
                         f"committed fact(s); pass --fresh to start {name} again")
    if len(chain) > committed:
        store.set_head(chain[committed - 1] if committed else None)
    return rows


def collect(out: Path, facts: int) -> dict:
    """Every mitigation measured under `out` (one invocation each, or several at once), in MITIGATIONS' order."""
    results: dict = {"facts": facts, "mitigations": {}}
    for name in MITIGATIONS:
        if not rows_path(out, name).is_file():
            continue
        settings = json.loads(settings_path(out, name).read_text())
        rows = [json.loads(line) for line in rows_path(out, name).read_text().splitlines() if line.strip()]
        results.setdefault("model", settings["model"])
        results.setdefault("command", settings["command"])
        results["mitigations"][name] = {**{k: v for k, v in settings.items() if k not in ("model",)}, "rows": rows}
    return results


def _mean(values) -> float | None:
    vs = [v for v in values if v is not None]
    return sum(vs) / len(vs) if vs else None


def _fmt(v) -> str:
    if v is None or isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.1f}" if isinstance(v, float) and v > 10 else f"{v:.2f}"


def write_md(path: Path, results: dict) -> None:
    lines = [f"# Locality over a sequence of learned facts ({results['model']})", "",
             "Greedy answers, graded by containment. reliability: probe questions of all facts learned so far; "
             "reliability_new: the last fact's; generalisation: paraphrased probes of all facts so far; locality: "
             "held-out general questions the base model knew; bleed: the last fact's bleed questions naming its "
             "new names; perplexity: general text (base: the first row's `perplexity_base`). The gate ran "
             "report-only: 'would reject' lists its objections.", ""]
    lines += ["## After the last fact measured", "",
              "| mitigation | facts | " + " | ".join(MEASURES) + " | mean locality | mean bleed | would reject |",
              "|" + "---|" * (len(MEASURES) + 5)]
    for name, m in results["mitigations"].items():
        rows = m["rows"]
        if rows:
            last = rows[-1]
            rejected = sum(1 for r in rows if r["gate_failures"])
            lines.append(f"| {name} | {last['facts']} | " + " | ".join(_fmt(last[k]) for k in MEASURES)
                         + f" | {_fmt(_mean(r['locality'] for r in rows))} | {_fmt(_mean(r['bleed'] for r in rows))}"
                         + f" | {rejected} of {len(rows)} |")
    lines.append("")
    for name, m in results["mitigations"].items():
        rows = m["rows"]
        base = rows[0]["perplexity_base"] if rows else None
        lines += [f"## {name}", "", m["description"], "", f"`{m['command']}`", "",
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
    ap.add_argument("--mitigations", default="default,self_distill,gentle,mlp_band",
                    help=f"comma-separated, of: {', '.join(MITIGATIONS)}")
    ap.add_argument("--tiny", action="store_true", help="a tiny model that knows a few bank questions (tests)")
    ap.add_argument("--fresh", action="store_true",
                    help="start the named mitigations again from the base model (default: continue where they stopped)")
    ap.add_argument("--stop-after", type=int, default=None, metavar="K",
                    help="learn at most K more facts per mitigation in this invocation (the same command continues)")
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
    given = list(argv if argv is not None else sys.argv[1:])
    for flag in ("--stop-after", "--fresh"):  # how far one invocation went is not part of the run's command
        while flag in given:
            i = given.index(flag)
            del given[i: i + (2 if flag == "--stop-after" else 1)]
    command = " ".join(["python scripts/locality_sequence.py", *given])
    for name in names:
        base = load_config([*BEFORE, *overrides, f"chat.store={out / 'stores' / name}",
                            "chat.background=false",
                            "chat.gate.report_only=true"])
        cfg = MITIGATIONS[name](base)
        settings = {"description": " ".join((MITIGATIONS[name].__doc__ or "today's chat settings").split()),
                    "model": cfg.model.name, "command": command,
                    "inner_loop": {"lr": cfg.inner_loop.lr, "epochs": cfg.inner_loop.epochs,
                                   "lora_r": cfg.inner_loop.lora_r,
                                   "target_modules": list(cfg.inner_loop.target_modules),
                                   "layers_to_transform": list(cfg.inner_loop.layers_to_transform)},
                    "replay_sources": list(cfg.chat.replay_sources),
                    "chat": {"stop_on_probes": cfg.chat.stop_on_probes, "replay_fraction": cfg.chat.replay_fraction,
                             "name_questions": cfg.chat.name_questions,
                             # only when not the default, so rows measured before the setting existed still match
                             **({"memory": cfg.chat.memory} if cfg.chat.memory != "merged" else {})}}
        prior = prepare(out, name, cfg, settings, FACTS[:args.facts], fresh=args.fresh)
        if prior:
            print(f"{name}: resuming after {len(prior)} fact(s) already measured in {rows_path(out, name)}", flush=True)
        run_mitigation(name, cfg, FACTS[:args.facts], lambda s: print(s, flush=True),
                       rows_file=rows_path(out, name), rows=prior, stop_after=args.stop_after)
    results = collect(out, args.facts)
    (out / "locality.json").write_text(json.dumps(results, indent=1))
    write_md(out / "locality.md", results)
    write_png(out / "locality.png", results)
    print(f"wrote {out / 'locality.json'}, {out / 'locality.md'}, {out / 'locality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
