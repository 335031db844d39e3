"""Recipe `tool_use`: learning a made-up tool API while chatting (REFERENCE §3's case study).

    seal experiment=tool_use                     # SmolLM2 on CPU: 10 / 50 / 100 examples, ~20 min

The project's fictional tool API (`seal.chat.tool_api`) is new to every model. Each condition answers
held-out requests (calls never seen in any example) with one tool call, scored by a safe parser
(`seal.chat.tool_api.score_call`):
  none        the API documentation in the system prompt, no examples
  in_context  the documentation in the system prompt + the n examples as earlier chat turns
  online      the documentation and the n examples learned into the weights through
              `seal.chat.session.Session.learn_examples` (one LoRA update with replay, the gate on separate
              probe examples, commit), then asked with nothing in the prompt but the request
Each (condition, n) is one record of the run folder, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace

from seal.chat.config import SessionConfig
from seal.chat.session import Session
from seal.chat.tool_api import api_docs, make_examples, score_call
from seal.generation.hf import generate_shared_prefix
from seal.infra.config import ConfigError, derive_seed
from seal.infra.report import line_plot, md_table, print_table
from seal.infra.run_dir import RunDir
from seal.infra.tracking import Tracker, WandbConfig

CONDITIONS = ("none", "in_context", "online")


@dataclass(frozen=True)
class ToolStudyConfig:
    counts: list[int] = field(default_factory=lambda: [10, 50, 100])
    test: int = 60  # held-out requests; their calls are in no example
    probes: int = 12  # gate probes for online learning (train-split calls, disjoint from the examples)
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    max_new_tokens: int = 40
    batch_size: int = 8


@dataclass(frozen=True)
class ToolUseConfig(SessionConfig):  # a chat session's sections + the study's
    tools: ToolStudyConfig = field(default_factory=ToolStudyConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


SYSTEM = ("You operate the Quell research station through the tools below. Reply to each request with exactly one "
          "tool call, written like name(arg=value, ...), and nothing else.\n\n")


def validate(cfg: ToolUseConfig) -> None:
    t = cfg.tools
    bad = [c for c in t.conditions if c not in CONDITIONS]
    if bad:
        raise ConfigError(f"tools.conditions: unknown {bad} (choose from {', '.join(CONDITIONS)})")
    if not t.counts or min(t.counts) < 1:
        raise ConfigError(f"tools.counts must be positive example counts, got {t.counts}")
    if t.test < 1 or t.probes < 1:
        raise ConfigError("tools.test and tools.probes must be at least 1")


def run(cfg: ToolUseConfig, rd: RunDir) -> dict:
    validate(cfg)
    with Tracker(cfg.wandb, rd, rd.config, name=f"tool_use-{rd.path.name}") as tracker:
        return _run(cfg, rd, tracker)


def _run(cfg: ToolUseConfig, rd: RunDir, tracker: Tracker) -> dict:
    t = cfg.tools
    system = SYSTEM + api_docs()
    pool = make_examples(max(t.counts) + t.probes, derive_seed(cfg.seed, "train_examples"), "train")
    probes, train = pool[:t.probes], pool[t.probes:]  # every n takes a prefix: 10 within 50 within 100
    test = make_examples(t.test, derive_seed(cfg.seed, "test_examples"), "test")
    session = None

    def get_session(store: str) -> Session:
        nonlocal session
        chat = replace(cfg.chat, store=str(rd.path / store), background=False, system_prompt=None, version=None)
        scfg = SessionConfig(model=cfg.model, inner_loop=cfg.inner_loop, self_edit=cfg.self_edit, chat=chat,
                             seed=cfg.seed)
        if session is None:
            session = Session(scfg)
        else:  # one model in memory: point the session at a fresh store, back at the base weights
            session.cfg = scfg
            session.store = type(session.store)(chat.store, cfg.model.name)
            session.checkout(None)
        return session

    jobs = [("none", 0)] if "none" in t.conditions else []
    jobs += [(c, n) for n in t.counts for c in ("in_context", "online") if c in t.conditions]
    for cond, n in jobs:
        key = rd.key("tool_use", cond, n)
        if rd.has(key):
            continue
        s = get_session(f"store_{cond}_{n}")
        rec: dict = {"condition": cond, "n": n}
        shots = [(e.request, e.call) for e in train[:n]] if cond == "in_context" else []
        if cond == "online":
            result = s.learn_examples([(e.request, e.call) for e in train[:n]], [(e.request, e.call) for e in probes],
                                      source=f"{n} examples", documents=[system])
            rec["learn"] = {k: v for k, v in vars(result).items() if k != "probes"}
        outputs = _answer(s, None if cond == "online" else system, shots, [e.request for e in test], t,
                          derive_seed(cfg.seed, "answer", cond, n))
        scores = [score_call(o, e) for o, e in zip(outputs, test)]
        rec["answers"] = [{"request": e.request, "call": e.call, "output": o, **sc}
                          for e, o, sc in zip(test, outputs, scores)]
        for m in ("exact", "tool", "parsed"):
            rec[m] = statistics.fmean(float(sc[m]) for sc in scores)
        rd.put(key, rec)
        tracker.log({f"{cond}/exact": rec["exact"], "examples": n}, axis="examples")
    out = _summary(cfg, rd, jobs)
    rd.write_json("results.json", out)
    _report(cfg, rd, out)
    return out


def _answer(s: Session, system: str | None, shots: list[tuple[str, str]], requests: list[str], t: ToolStudyConfig,
            seed: int) -> list[str]:
    """Greedy replies to each request; `shots` go before it as earlier chat turns. Every condition
    uses the same path (one prompt at a time, the shared prefix read once), so no condition's
    answers differ by batching or padding."""
    turns = [{"role": "system", "content": system}] if system else []
    for q, a in shots:
        turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    prompts = [s.tok.apply_chat_template(turns + [{"role": "user", "content": r}], tokenize=False,
                                         add_generation_prompt=True) for r in requests]
    return generate_shared_prefix(s.model, s.tok, prompts, t.max_new_tokens, desc=f"answering {len(prompts)} requests")


def _stderr(p: float, n: int) -> float:
    return (p * (1 - p) / n) ** 0.5 if n > 1 else 0.0


def _summary(cfg: ToolUseConfig, rd: RunDir, jobs) -> dict:
    rows = {}
    for cond, n in jobs:
        rec = rd.get(rd.key("tool_use", cond, n))
        rows.setdefault(cond, {})[n] = {m: rec[m] for m in ("exact", "tool", "parsed")} | (
            {"learn": rec["learn"]} if "learn" in rec else {})
    return {"test": cfg.tools.test, "counts": cfg.tools.counts, "conditions": rows}


def _report(cfg: ToolUseConfig, rd: RunDir, out: dict) -> None:
    n_test, counts, conds = out["test"], out["counts"], out["conditions"]
    headers = ["condition", "examples", "exact call", "right tool", "parsable",
               "learning (gate figures: nats/token, general-text perplexity, everyday replies, greedy locality and "
               "bleed)"]
    rows = []
    for cond, by_n in conds.items():
        for n, v in by_n.items():
            learn = v.get("learn")
            note = "—"
            if learn and learn.get("gain") is not None:
                verdict = "committed" if learn["accepted"] else "rejected"
                greedy = ", ".join(f"{m} {learn[m]:.2f}" for m in ("locality", "bleed") if learn.get(m) is not None)
                note = (f"{verdict}: gain {learn['gain']:+.2f}, perplexity "
                        f"{100 * (learn['ppl_after'] / learn['ppl_before'] - 1):+.0f} %, everyday replies "
                        f"{-learn['chat_drop']:+.2f}" + (f", {greedy}" if greedy else "") + f", {learn['seconds']:.0f} s")
            elif learn:
                note = learn["reason"]
            rows.append([cond, n, f"{v['exact']:.3f} ± {_stderr(v['exact'], n_test):.3f}", f"{v['tool']:.3f}",
                         f"{v['parsed']:.3f}", note])
    print_table(f"tool_use: held-out tool-call accuracy ({n_test} requests)", headers, rows)
    series = {}
    for cond, by_n in conds.items():
        ys = [by_n.get(n, by_n.get(0, {})).get("exact", 0.0) for n in counts]
        series[cond] = (ys, [_stderr(y, n_test) for y in ys])
    line_plot(rd.path / "accuracy.png", counts, series, "Held-out tool-call accuracy", "examples")
    il, c = cfg.inner_loop, cfg.chat
    lines = [f"# tool_use: learning a made-up tool API from examples ({cfg.model.name})", "",
             f"{n_test} held-out requests (calls never in any example), greedy replies, exact match of the parsed "
             f"call. `none` and `in_context` have the API documentation in the system prompt; `online` learned the "
             f"documentation and the examples into the weights and sees only the request. Online learning: LoRA r="
             f"{il.lora_r}, lr {il.lr}, {il.epochs} epochs, batch {il.batch_size}, schedule {c.scheduler}, "
             f"{100 * c.replay_fraction:.0f} % of every step's tokens replayed from {', '.join(c.replay_sources)}; "
             f"the gate measured {cfg.tools.probes} separate probe examples (min gain "
             f"{c.gate.min_gain} nats/token, everyday replies may lose at most {c.gate.max_chat_drop}, general "
             f"perplexity may rise at most {100 * c.gate.max_ppl_increase:.0f} %). `none` does not depend on n. "
             f"Seed {cfg.seed}.", "", md_table(headers, rows), "", "![accuracy](accuracy.png)", ""]
    (rd.path / "report.md").write_text("\n".join(lines))
