"""How varied a set of self-edits is, so that a collapse of the policy's writing shows in the numbers.

- `compression_ratio`: raw bytes / gzip bytes of all texts joined (SPA's measure of collapse: a policy
  that writes the same sentences again compresses well; higher is more repetitive).
- `distinct_n`: distinct word n-grams / all word n-grams over all texts (n = 1, 2, 3; lower is more
  repetitive).
- `pairwise_similarity`: mean Jaccard similarity of the word sets of two self-edits written for the
  same context, averaged over contexts with at least two (higher: the k samples say the same thing).
- `mean_words`: mean length in words.

Words are lower-cased runs of letters and digits. Pure functions of the texts; no model.
"""

from __future__ import annotations

import gzip
import itertools
import re
import statistics

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def compression_ratio(texts: list[str]) -> float | None:
    raw = "\n".join(texts).encode()
    if not raw:
        return None
    return len(raw) / len(gzip.compress(raw, compresslevel=9, mtime=0))


def distinct_n(texts: list[str], n: int) -> float | None:
    grams = [tuple(w[i:i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def jaccard(a: str, b: str) -> float:
    sa, sb = set(words(a)), set(words(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def pairwise_similarity(by_context: dict[str, list[str]]) -> float | None:
    means = [statistics.fmean(jaccard(a, b) for a, b in itertools.combinations(texts, 2))
             for texts in by_context.values() if len(texts) >= 2]
    return statistics.fmean(means) if means else None


def diversity(by_context: dict[str, list[str]]) -> dict:
    """All measures for the self-edits of one condition or round: context uid -> its self-edits."""
    texts = [t for ts in by_context.values() for t in ts]
    out = {"n_texts": len(texts), "compression_ratio": compression_ratio(texts)}
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(texts, n)
    out["pairwise_similarity"] = pairwise_similarity(by_context)
    out["mean_words"] = statistics.fmean(len(words(t)) for t in texts) if texts else None
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
