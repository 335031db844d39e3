"""The training contexts of each ReST-EM round: drawn once from the whole pool with the run's seed,
never reused across rounds, and recorded (uids, titles, content digests) so that a resumed run
cannot silently train on other contexts."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from seal.infra.config import ConfigError, derive_seed
from seal.infra.run_dir import RunDir

if TYPE_CHECKING:
    from seal.rl.config import OuterLoopConfig


def round_contexts(train: list, oc: OuterLoopConfig, seed: int) -> list[list]:
    """The training contexts of every round: one seeded shuffle of the pool, cut into consecutive
    rounds, so no context is used twice and each round draws across the whole pool (in SQuAD order
    the first 50 paragraphs are one or two articles). Contexts need a `uid`."""
    order = random.Random(derive_seed(seed, "round_contexts")).sample(range(len(train)), len(train))
    n = oc.contexts_per_round
    return [[train[i] for i in order[r * n:(r + 1) * n]] for r in range(oc.rounds)]


def context_digest(context) -> str:
    """A short hash of what a context holds (a passage's title, text and questions; an ARC task's grids),
    not its uid: file uids are record positions, so an edited file keeps them."""
    import dataclasses
    import hashlib
    import json

    content = dataclasses.asdict(context) if dataclasses.is_dataclass(context) else {"repr": repr(context)}
    content = {k: v for k, v in content.items() if k not in ("uid", "completions")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_contexts(rd: RunDir, rounds: list[list]) -> None:
    """Record each round's contexts (uid, title, content digest) once; a resumed run whose data now
    gives other contexts, or the same uids with other content, is refused instead of silently
    training on a different set."""
    for r, contexts in enumerate(rounds):
        got = [c.uid for c in contexts]
        digests = [context_digest(c) for c in contexts]
        rec = rd.get(rd.key("contexts", r))
        if rec is None:
            rd.put(rd.key("contexts", r), {"round": r, "uids": got,
                                           "titles": [getattr(c, "title", c.uid) for c in contexts],
                                           "digests": digests})
        elif rec["uids"] != got or rec.get("digests", digests) != digests:
            raise ConfigError(f"restem: round {r}'s recorded training contexts differ from what the data and "
                              "seed give now (was the data file changed?); resume with the original data")
