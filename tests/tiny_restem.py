"""Shared by the tests of the outer loop (and `scripts/faults.py`): a ReST-EM run on the tiny random
model small enough for seconds, selection inputs written as plain scores, and a kill in the inner loops."""

from __future__ import annotations

RESTEM = ["experiment=restem", "model=tiny-random", "wandb.mode=disabled", "data.num_passages=4",
          "eval_data.num_passages=2", "restem.rounds=2", "restem.contexts_per_round=2", "self_edit.k=2",
          "restem.seeds_per_edit=2", "restem.eval_passages=2", "self_edit.max_new_tokens=12", "inner_loop.epochs=2",
          "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=6", "m_step.effective_batch=1",
          "m_step.epochs=1", "m_step.lora_r=4", "m_step.lora_alpha=8", "selection.rule=top_fraction",
          "selection.fraction=0.5", "inner_loop.adapters_per_batch=3"]


def restem(**changes) -> list[str]:
    """`RESTEM` with some values replaced: restem(**{"restem.rounds": 1})."""
    out = [o for o in RESTEM if o.split("=", 1)[0] not in changes]
    return out + [f"{k}={v}" for k, v in changes.items()]


def rewards(scores: dict[str, list[float]], base: float = 0.0, unusable=frozenset()):
    """One EditReward per score: context -> the scores of its samples in order."""
    from seal.rl.reward import EditReward

    return [EditReward(c, i, s, base, (s,), "the completion holds only filler" if (c, i) in unusable else None)
            for c, ss in scores.items() for i, s in enumerate(ss)]


def chosen(rewards_, cfg) -> list[dict]:
    """The rewards with selection's verdict beside each, as the select/<r> record shows them."""
    from seal.rl.selection import select

    return [{"context": r.context, "sample": r.sample, "score": r.score, "kept": k, "why": w}
            for r, (k, w) in zip(rewards_, select(rewards_, cfg))]


def kept(edits: list[dict]) -> list[tuple[str, int]]:
    return sorted((e["context"], e["sample"]) for e in edits if e["kept"])


def kill_on_call(monkeypatch, n: int) -> dict[str, int]:
    """Make `KnowledgeTask.adapt_and_evaluate_many` raise KeyboardInterrupt on its n-th call (a simulated
    kill). Returns the counters it keeps: "calls" made and "items" finished (the items of the calls before)."""
    from seal.domains.knowledge.task import KnowledgeTask

    real = KnowledgeTask.adapt_and_evaluate_many
    counts = {"calls": 0, "items": 0}

    def dying(self, items, **kw):
        counts["calls"] += 1
        if counts["calls"] == n:
            raise KeyboardInterrupt("simulated kill")
        out = real(self, items, **kw)
        counts["items"] += len(items)
        return out

    monkeypatch.setattr(KnowledgeTask, "adapt_and_evaluate_many", dying)
    return counts


def count_items(monkeypatch) -> dict[str, int]:
    """Count the items `KnowledgeTask.adapt_and_evaluate_many` is given from now on: {"items": n}."""
    from seal.domains.knowledge.task import KnowledgeTask

    real = KnowledgeTask.adapt_and_evaluate_many
    counts = {"items": 0}

    def counting(self, items, **kw):
        counts["items"] += len(items)
        return real(self, items, **kw)

    monkeypatch.setattr(KnowledgeTask, "adapt_and_evaluate_many", counting)
    return counts
