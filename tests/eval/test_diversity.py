"""Diversity measures of self-edits: each moves the right way on texts whose answer is known."""

from __future__ import annotations

import gzip

from seal.eval.diversity import compression_ratio, distinct_n, diversity, jaccard, pairwise_similarity, words

VARIED = ["Velmora lies on the Quorrin river.", "Its mayor, Ansel Brenna, was elected in 1931.",
          "The town exports copper wire and glass lenses.", "A lantern festival is held every March."]


def test_a_repeated_text_compresses_far_better_than_varied_text():
    repeated = ["The town exports copper wire."] * 40
    assert compression_ratio(repeated) > 10
    assert compression_ratio(VARIED) < 2
    joined = "\n".join(VARIED).encode()
    assert compression_ratio(VARIED) == len(joined) / len(gzip.compress(joined, compresslevel=9, mtime=0))
    assert compression_ratio([]) is None


def test_distinct_n_counts_unique_ngrams_over_all_texts():
    assert distinct_n(["a b a b"], 1) == 2 / 4
    assert distinct_n(["a b a b"], 2) == 2 / 3  # (a b), (b a), (a b)
    assert distinct_n(["a b", "a b"], 2) == 1 / 2
    assert distinct_n(["one"], 2) is None  # no bigram at all
    assert distinct_n(VARIED, 1) > distinct_n(VARIED * 3, 1)


def test_pairwise_similarity_is_within_a_context_only():
    assert jaccard("The cat sat", "the CAT sat!") == 1.0
    assert jaccard("a b", "c d") == 0.0
    same = {"p1": ["a b c", "a b c"], "p2": ["x y", "x y"]}
    apart = {"p1": ["a b c", "d e f"], "p2": ["x y", "z w"]}
    assert pairwise_similarity(same) == 1.0 and pairwise_similarity(apart) == 0.0
    # two contexts each saying one thing: identical across contexts does not count
    assert pairwise_similarity({"p1": ["a b"], "p2": ["a b"]}) is None
    assert pairwise_similarity({"p1": ["a b", "a c"]}) == 1 / 3


def test_diversity_summary():
    d = diversity({"p1": VARIED[:2], "p2": VARIED[2:]})
    assert d["n_texts"] == 4 and d["mean_words"] == sum(len(words(t)) for t in VARIED) / 4
    assert set(d) == {"n_texts", "compression_ratio", "distinct_1", "distinct_2", "distinct_3",
                      "pairwise_similarity", "mean_words"}
    collapsed = diversity({"p1": [VARIED[0]] * 3, "p2": [VARIED[0]] * 3})
    assert collapsed["compression_ratio"] > d["compression_ratio"]
    assert collapsed["distinct_2"] < d["distinct_2"] and collapsed["pairwise_similarity"] == 1.0
