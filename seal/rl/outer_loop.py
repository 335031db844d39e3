"""The SEAL outer loop (ReST-EM), one implementation for every domain: recipe `restem` runs it on
knowledge incorporation, recipe `arc_restem` on ARC.

A round, for policy r (round 0 = the base model):
  1. evaluate policy r on held-out contexts: `eval_samples` self-edits per context, one inner loop
     each; beside it the unadapted policy (`base`) and the domain's references (knowledge: training
     on the passage alone, `passage`; ARC: the hand-tuned configuration, `oracle`)
  2. E-step on fresh training contexts: sample k self-edits per context (seeded, recorded in chunks),
     run each through the inner loop with `seeds_per_edit` seeds; the domain's `reward` turns those
     runs and the unadapted score into one `EditReward` per edit (`seal.rl.reward`)
  3. selection reads the rewards (`seal.rl.selection`); every edit records kept and why
  4. M-step: SFT of policy r on the kept (prompt, self-edit) pairs (`seal.rl.m_step`); it is policy
     r+1 and the next round's inner-loop base
After the last round the final policy is evaluated too, and `report.md` shows accuracy per round.
A domain (`seal.rl.protocols`) supplies contexts, sampling, the inner loop and the reward; the loop,
selection, M-step, records and report are shared.

Every inner loop is recorded the moment it finishes under (round, context, sample, seed); a policy
folder appears only once its M-step has finished (written to a temp folder, then renamed). So a
resumed run skips all finished work and, with the same seeds, ends with identical results. A policy
folder missing on resume (not copied with the run folder) is trained again from the recorded pairs, and
its losses are checked against the recorded ones (`retrain_check`).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from seal.infra.chunking import pending_chunks
from seal.infra.config import derive_seed
from seal.infra.run_dir import RunDir
from seal.infra.runtime import LocalRunner, make_runner
from seal.infra.sample_records import chunk_seed, contexts_per_chunk, read_samples, sample_chunked
from seal.infra.tracking import Tracker
from seal.rl.config import LoopSettings, OuterLoopConfig
from seal.rl.contexts import record_contexts, round_contexts
from seal.rl.m_step import m_step, validate_m_step
from seal.rl.protocols import Domain, Item, Session
from seal.rl.report import eval_conditions, eval_key, eval_summary, summarise, write_report
from seal.rl.reward import EditReward
from seal.rl.selection import select

# the wandb table of a round's self-edits (`estep/self_edits`): column -> key of the edit's `select/<r>` record
EDIT_COLUMNS = {"context": "context", "sample": "sample", "self_edit": "self_edit", "reward": "score",
                "gain": "gain", "kept": "kept", "why": "why"}

log = logging.getLogger("seal")


@dataclass(frozen=True)
class Round:
    """What every step of round r shares: the domain, where records go, where inner loops run, and
    which policy (a model name, or the folder the previous M-step wrote) is being improved."""
    domain: Domain
    rd: RunDir
    tracker: Tracker
    runner: object  # `seal.infra.runtime`: LocalRunner or a Ray pool
    seed: int
    r: int
    policy: str
    sample_chunk: int = 0


def outer_loop(domain: Domain, train: list, held_out: list, s: LoopSettings, rd: RunDir) -> dict:
    """ReST-EM rounds over any domain: evaluate policy r, E-step, selection, M-step -> policy r+1.
    Round r trains on `round_contexts(train, s.outer, s.seed)[r]`."""
    oc = s.outer
    validate_m_step(s.m_step)
    rounds = round_contexts(train, oc, s.seed)
    record_contexts(rd, rounds)
    with Tracker(s.wandb, rd, rd.config, name=f"restem-{rd.path.name}") as tracker:
        runner = make_runner(s.runtime, domain)
        evals = {}
        try:
            for r in range(oc.rounds + 1):
                # policy r: the base model, or the folder the previous M-step wrote (kept relative to the run folder)
                policy = s.model.name if r == 0 else _policy_path(rd, rd.get(rd.key("m_step", r - 1))["policy"])
                rnd = Round(domain, rd, tracker, runner, s.seed, r, policy, s.sample_chunk)
                session = domain.open(policy, r)
                if not rd.has(rd.key("adapter", r)):
                    rd.put(rd.key("adapter", r), {"round": r, **session.adapter_info()})
                evals[r] = evaluate_policy(rnd, session, held_out, oc.eval_samples, eval_conditions(domain, oc, r))
                record_locality(rnd, session, held_out, oc)
                if r == oc.rounds:
                    session.close()
                    break
                contexts = rounds[r]
                rewards, texts = e_step(rnd, session, contexts, s.k, oc.seeds_per_edit)
                edits = [{**rw.to_record(text), "kept": kept, "why": why}
                         for rw, text, (kept, why) in zip(rewards, texts, select(rewards, s.selection))]
                kept = [e for e in edits if e["kept"]]
                if not rd.has(rd.key("select", r)):
                    rd.put(rd.key("select", r), {"round": r, "rule": s.selection.rule, "edits": edits,
                                                 "n_kept": len(kept)})
                tracker.log_table("estep/self_edits", list(EDIT_COLUMNS),
                                  [[e[k] for k in EDIT_COLUMNS.values()] for e in edits], round=r)
                pairs = m_step_pairs(session, rd, r, contexts, kept)
                session.close()  # the engine's GPU memory is the M-step's now
                del session
                gc.collect()
                m_step_round(rnd, s, pairs)
        finally:
            runner.close()
        results = summarise(rd, evals, seed=s.seed, domain=domain)
        write_report(domain, s, rd, results)
    return results


def m_step_round(rnd: Round, s: LoopSettings, pairs: list[dict]) -> None:
    """Policy r+1 from the kept pairs, unless a finished M-step already wrote it; with no pair kept
    the policy carries over unchanged, and the report says so."""
    rd, r = rnd.rd, rnd.r
    done = rd.get(rd.key("m_step", r))
    if done is not None and Path(_policy_path(rd, done["policy"])).is_dir():
        return
    if not pairs:
        rd.put(rd.key("m_step", r), {"round": r, "policy": done["policy"] if done else rnd.policy,
                                     "skipped": f"selection '{s.selection.rule}' kept no self-edit"})
        return
    name = f"policy_round{r + 1}"
    # the M-step's training curve in wandb: m_step/train/* against its step, counted over the whole run
    offset = sum((rd.get(rd.key("m_step", i)) or {}).get("steps", 0) for i in range(r))
    inline = s.m_step.launcher == "inline"
    callbacks = rnd.tracker.trainer_callbacks("m_step/train", offset, round=r) if inline else []
    stats = m_step(rnd.policy, s.model, pairs, s.m_step, derive_seed(s.seed, "m_step", r), rd.path / name,
                   callbacks=callbacks, log=rd.path / f"m_step_round{r}.log")
    if not inline:  # launched processes log nothing to wandb (`seal.rl.m_step_main`); their losses came back
        rnd.tracker.log_steps("m_step/train", [{"loss": x} for x in stats["losses"]], offset, round=r)
    record = {"round": r, "policy": name, **stats}
    if done is not None and "losses" in done:
        record["retrained"] = retrain_check(done, stats, r)
    rd.put(rd.key("m_step", r), record)
    rd.metric(round=r, m_step_loss=stats["train_loss"], m_step_pairs=len(pairs))
    rnd.tracker.log({"m_step/loss": stats["train_loss"], "m_step/pairs": len(pairs), "round": r}, axis="round")


def retrain_check(recorded: dict, stats: dict, r: int, tolerance: float = 1e-3) -> dict:
    """An M-step run again because its policy folder is gone (deleted, or never copied with the run
    folder): the same pairs and seed should give the same losses step by step. How far they are from the
    recorded ones is kept in the new record and a gap is logged, so that later scores by this policy
    are known to come from the policy the run trained, or known not to."""
    first = recorded.get("retrained") or {}  # trained again before: compare with the run's first training
    old = first.get("recorded_losses", recorded["losses"])
    new = stats["losses"]
    gap = max((abs(a - b) for a, b in zip(old, new)), default=0.0) if len(old) == len(new) else float("inf")
    check = {"recorded_train_loss": first.get("recorded_train_loss", recorded["train_loss"]),
             "recorded_losses": old, "recorded_steps": len(old), "max_abs_loss_diff": gap, "matches": gap <= tolerance}
    if not check["matches"]:
        log.warning("M-step of round %d was trained again (its policy folder is missing) and its losses differ "
                    "from the recorded ones by up to %s over %d/%d steps: the policy is not the one the run "
                    "first trained", r, gap, len(new), len(old))
    return check


def m_step_pairs(session: Session, rd: RunDir, r: int, contexts: list, kept: list[dict]) -> list[dict]:
    """The kept self-edits as M-step examples: the exact prompt text the policy was sampled with and
    the exact token ids it drew (a record from before ids were kept falls back to the text)."""
    by_uid = {c.uid: c for c in contexts}
    ids = read_samples(rd, rd.key("estep", r, "completions")).get("completion_ids", {})
    pairs = []
    for e in kept:
        pair = {"prompt": session.sample_prompt(by_uid[e["context"]]), "completion": e["self_edit"]}
        if e["context"] in ids:
            pair["completion_ids"] = ids[e["context"]][e["sample"]]
        pairs.append(pair)
    return pairs


def _policy_path(rd: RunDir, policy: str) -> str:
    """A policy recorded as a folder name inside the run folder, or a model name/path as given."""
    inside = rd.path / policy
    # absolute, so that workers in other processes (runtime=ray) find it whatever their working folder
    return str(inside.resolve()) if inside.is_dir() or policy.startswith("policy_round") else policy


def record_base(session: Session, rd: RunDir, contexts: list, key, head, phase: str) -> None:
    """The unadapted policy's score per context, in fixed chunks of K, one write per chunk; phase
    "eval" (held-out) or "estep" (`Session.base_many`: only E-step bases hold what the reward compares with)."""
    for group in pending_chunks(contexts, session.adapters_per_batch, lambda c: rd.has(key(c))):
        outs = session.base_many(group, phase=phase)
        rd.put_many([(key(c), {**head(c), **out}) for c, out in zip(group, outs)])


def run_inner_loops(rnd: Round, session: Session, todo: list[list], items: list[list], desc: str, on_chunk) -> None:
    """Run the chunks of items (`seal.rl.protocols.Item`) on the round's runner (`seal.infra.runtime`;
    chunks arrive as they finish) and hand each finished chunk's outputs to `on_chunk(j, outs)`."""
    runner = rnd.runner or LocalRunner()
    bar = runner.progress(sum(len(ch) for ch in todo), desc)
    for j, outs in runner.map(session, rnd.policy, rnd.r, items):
        on_chunk(j, outs)
        bar.update(len(todo[j]))
    bar.close()


def evaluate_policy(rnd: Round, session: Session, held_out: list, n_samples: int, conditions: list[str]) -> dict:
    """Held-out score of policy r under `conditions` (`seal.rl.report.eval_conditions`): n_samples
    self-edits per context, one inner loop each; and, when listed, the unadapted policy (`base`) and the
    domain's references, once per context."""
    rd, r, seed = rnd.rd, rnd.r, rnd.seed
    sampled = sample_in_chunks(rnd, session, "eval", held_out, n_samples)
    comps = {uid: [t] if isinstance(t, str) else t for uid, t in sampled["completions"].items()}
    references = [c for c in conditions if c in rnd.domain.references]
    if "base" in conditions:
        record_base(session, rd, held_out, key=lambda c: eval_key(rd, r, "base", c.uid),
                    head=lambda c: {"round": r, "condition": "base", "passage": c.uid}, phase="eval")
    jobs = [("self_edit", c, i) for c in held_out for i in range(n_samples)]
    jobs = [("self_edit", c, 0) for c in held_out] + [j for j in jobs if j[2]] + [(ref, c, 0) for ref in references
                                                                               for c in held_out]
    todo = pending_chunks(jobs, session.adapters_per_batch, lambda j: rd.has(eval_key(rd, r, j[0], j[1].uid, j[2])))
    texts = [[comps[c.uid][i] if cond == "self_edit" else "" for cond, c, i in ch] for ch in todo]
    items = [[Item(cond, c, text, derive_seed(seed, "eval_inner", r, cond, c.uid, *([i] if i else [])))
              for (cond, c, i), text in zip(ch, tx)] for ch, tx in zip(todo, texts)]

    def record(j: int, outs: list[dict]) -> None:
        rd.put_many([(eval_key(rd, r, cond, c.uid, i), {"round": r, "condition": cond, "passage": c.uid,
                                                        **({"sample": i} if i else {}), "self_edit": text, **out})
                     for (cond, c, i), text, out in zip(todo[j], texts[j], outs)])

    run_inner_loops(rnd, session, todo, items, f"round {r} eval: inner loops", record)
    summary = eval_summary(rnd.domain, rd, r, held_out, n_samples, conditions)
    rd.metric(round=r, **{f"eval_{c}": v["accuracy"] for c, v in summary.items()})
    rnd.tracker.log({f"eval/{c}": v["accuracy"] for c, v in summary.items()} | {"round": r}, axis="round")
    return summary


def record_locality(rnd: Round, session: Session, held_out: list, oc: OuterLoopConfig) -> None:
    """`locality/<r>`: what policy r has lost of the base model's general knowledge (`restem.locality`), for a
    session with `measure_locality` (knowledge): the unadapted policy on the questions the base (the round-0
    policy) answered right, recorded in round 0 and asked again every round; and the adapted models of the
    first `restem.locality_contexts` held-out contexts, their round-r self-edit (sample 0) trained again with
    its eval seed (the same adapter the held-out evaluation scored)."""
    rd, r, cfg = rnd.rd, rnd.r, oc.locality
    measure = getattr(session, "measure_locality", None)
    if measure is None or cfg.questions == 0 or rd.has(rd.key("locality", r)):
        return
    first = rd.get(rd.key("locality", 0))
    if r > 0 and first is None:
        return  # a run started before locality was measured: no base-known questions to ask
    comps = sample_in_chunks(rnd, session, "eval", held_out, oc.eval_samples)["completions"]
    items = [Item("self_edit", c, comps[c.uid] if isinstance(comps[c.uid], str) else comps[c.uid][0],
                  derive_seed(rnd.seed, "eval_inner", r, "self_edit", c.uid)) for c in held_out[:oc.locality_contexts]]
    rd.put(rd.key("locality", r), {"round": r, **measure(cfg, None if r == 0 else first["known_ids"], items)})


def sample_in_chunks(rnd: Round, session: Session, phase: str, contexts: list, per_context: int) -> dict:
    """`per_context` self-edits per context, sampled and recorded in fixed chunks of contexts
    (`<phase>/<r>/completions/<j>`, `seal.infra.sample_records`): a resumed run redoes at most one chunk."""
    r = rnd.r
    size = contexts_per_chunk(per_context, rnd.sample_chunk)
    n_chunks = -(-len(contexts) // size)

    def draw(j: int, group: list) -> dict:
        s = chunk_seed(rnd.seed, (f"{phase}_sampling", r), j)
        label = "E-step" if phase == "estep" else "eval"
        of = max(n_chunks, j + 1)  # a chunk of contexts added on a resume comes after the planned ones
        texts, ids, info = session.sample(group, per_context, s,
                                          desc=f"round {r} {label}: sampling (chunk {j + 1} of {of})")
        rec = {"round": r, "chunk": j, "seed": s, "completions": {c.uid: t for c, t in zip(group, texts)}}
        if phase == "estep":  # the M-step trains on exactly the ids the policy drew
            rec["completion_ids"] = {c.uid: i for c, i in zip(group, ids)}
        return {**rec, **({"sampling": info} if info else {})}

    return sample_chunked(rnd.rd, rnd.rd.key(phase, r, "completions"), contexts, size, draw)


def e_step(rnd: Round, session: Session, contexts: list, k: int, n_seeds: int) -> tuple[list[EditReward], list[str]]:
    """Sample k self-edits per context and run each through n_seeds inner loops; returns each edit's
    reward (the domain's `reward`) and its text, in (context, sample) order. Each inner loop is given
    its context's base record as recorded (`Item.base`), so it is scored against exactly what the base
    was (a resumed run, or a Ray worker with a session of its own, derives nothing again)."""
    rd, r, seed = rnd.rd, rnd.r, rnd.seed
    record_base(session, rd, contexts, key=lambda c: rd.key("estep", r, "base", c.uid),
                head=lambda c: {"round": r, "passage": c.uid}, phase="estep")
    bases = {c.uid: rd.get(rd.key("estep", r, "base", c.uid)) for c in contexts}
    comps = sample_in_chunks(rnd, session, "estep", contexts, k)["completions"]
    jobs = [(c, i, s) for c in contexts for i in range(k) for s in range(n_seeds)]
    todo = pending_chunks(jobs, session.adapters_per_batch, lambda j: rd.has(rd.key("estep", r, j[0].uid, j[1], j[2])))
    items = [[Item("estep", c, comps[c.uid][i], derive_seed(seed, "estep_inner", r, c.uid, i, s), bases[c.uid])
              for c, i, s in ch] for ch in todo]

    def record(j: int, outs: list[dict]) -> None:
        recs = rd.put_many([(rd.key("estep", r, c.uid, i, s), {"round": r, "context": c.uid, "sample": i,
                                                                "seed_index": s, **out})
                            for (c, i, s), out in zip(todo[j], outs)])
        for (c, i, s), rec in zip(todo[j], recs):
            if "accuracy" in rec:
                base = bases[c.uid]["accuracy"]
                rnd.tracker.log({"estep/accuracy": rec["accuracy"], "estep/gain": rec["accuracy"] - base, "round": r},
                                axis="inner_loop")

    run_inner_loops(rnd, session, todo, items, f"round {r} E-step: inner loops", record)
    rewards, texts = [], []
    for c in contexts:
        base = bases[c.uid]
        for i in range(k):
            runs = [rd.get(rd.key("estep", r, c.uid, i, s)) for s in range(n_seeds)]
            rewards.append(rnd.domain.reward(c, i, runs, base))
            texts.append(comps[c.uid][i])
    return rewards, texts
