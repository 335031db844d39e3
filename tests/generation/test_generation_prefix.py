"""Shared-prefix generation gives the same greedy replies as generating each prompt on its own."""

from __future__ import annotations

from seal.generation.hf import HFGenerator, SamplingConfig, generate_shared_prefix


def test_shared_prefix_matches_plain_generation(tiny):
    model, tok = tiny
    prefix = "system: answer briefly.\n" + "".join(f"user: question {i}\nassistant: answer {i}\n" for i in range(20))
    prompts = [prefix + f"user: {q}\nassistant:" for q in ("what is two?", "name a colour", "say hi")]
    plain = HFGenerator(model, tok).generate(prompts, SamplingConfig(max_new_tokens=8, batch_size=1))
    shared = generate_shared_prefix(model, tok, prompts, max_new_tokens=8)
    assert shared == plain and any(plain)
    # prompts with nothing in common (no prefix to reuse) take the plain path
    assert generate_shared_prefix(model, tok, ["abc", "xyz"], 4) == \
        HFGenerator(model, tok).generate(["abc", "xyz"], SamplingConfig(max_new_tokens=4, batch_size=1))
