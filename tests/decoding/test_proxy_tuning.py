"""Proxy-tuning on tiny random models: the logit arithmetic, the per-stream caches and the
one-copy expert/anti-expert are checked against plain greedy generation of single models."""

from __future__ import annotations

import pytest
import torch
from conftest import distinct_model

from seal.decoding.proxy_tuning import ProxyGenerator, proxy_generate
from seal.decoding.streams import Stream, VocabularyError
from seal.generation.hf import HFGenerator, SamplingConfig
from seal.inner_loop.multi_lora import MultiLoRA
from seal.models.tiny import tiny_tokenizer

PROMPTS = ["In 1874 the town", "Write questions and answers about the passage. Q:", "Rewrite", "0123 yes no"]
GREEDY = SamplingConfig(max_new_tokens=12, temperature=0.0, batch_size=3)  # 3: batches mix prompt lengths


@pytest.fixture(scope="module")
def models():
    base, tok = distinct_model(0)
    other, other_tok = distinct_model(1)
    return base, tok, other, other_tok


def plain(model, tok, prompts=PROMPTS):
    return HFGenerator(model, tok).generate(prompts, GREEDY)


def test_alpha_zero_is_the_base_models_greedy_output(models):
    base, tok, other, otok = models
    out = proxy_generate(Stream(base, tok, "base"), Stream(other, otok, "expert"), Stream(base, tok, "anti"),
                         PROMPTS, GREEDY, alpha=0.0)
    assert out == plain(base, tok)
    assert any(out)


def test_identical_expert_and_anti_expert_give_the_base_output(models):
    base, tok, other, otok = models
    out = proxy_generate(Stream(base, tok, "base"), Stream(other, otok, "expert"), Stream(other, otok, "anti"),
                         PROMPTS, GREEDY, alpha=1.5)
    assert out == plain(base, tok)


def test_base_equal_to_anti_expert_gives_the_expert_output(models):
    """base + 1 * (expert - base) = expert: the steering really moves the output."""
    base, tok, other, otok = models
    out = proxy_generate(Stream(base, tok, "base"), Stream(other, otok, "expert"), Stream(base, tok, "anti"),
                         PROMPTS, GREEDY, alpha=1.0)
    assert out == plain(other, otok)
    assert out != plain(base, tok)


@pytest.mark.parametrize("sampling", [GREEDY, SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=0.9,
                                                             batch_size=3)])
def test_cached_decoding_equals_recomputing_every_stream(models, sampling):
    base, tok, other, otok = models
    third, _ = distinct_model(2)
    streams = (Stream(base, tok, "base"), Stream(other, otok, "expert"), Stream(third, tok, "anti"))
    cached, cs = proxy_generate(*streams, PROMPTS, sampling, alpha=0.8, seed=3, return_scores=True)
    full, fs = proxy_generate(*streams, PROMPTS, sampling, alpha=0.8, seed=3, use_cache=False, return_scores=True)
    assert cached == full
    for a, b in zip(cs, fs):
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_sampling_is_seeded(models):
    base, tok, other, otok = models
    s = SamplingConfig(max_new_tokens=12, temperature=1.0, batch_size=4)
    streams = (Stream(base, tok, "base"), Stream(other, otok, "expert"), Stream(base, tok, "anti"))
    a = proxy_generate(*streams, PROMPTS, s, alpha=1.0, seed=5)
    assert a == proxy_generate(*streams, PROMPTS, s, alpha=1.0, seed=5)
    assert a != proxy_generate(*streams, PROMPTS, s, alpha=1.0, seed=6)


def test_expert_and_anti_expert_share_one_copy_of_the_weights(models):
    """Expert = adapter on, anti-expert = the same module with it off; each keeps its own cache."""
    base, tok, _, _ = models
    model, _ = distinct_model(4)
    lora = MultiLoRA(model, ["q_proj", "v_proj", "up_proj"], r=4, alpha=8, slots=1)
    lora.reset(0, seed=0)
    with torch.no_grad():
        for b in lora.B:
            b.normal_(0, 0.5)
    with lora.routing_all(0):
        adapted = plain(model, tok)
    unadapted = plain(model, tok)
    assert adapted != unadapted
    expert = Stream(model, tok, "expert", context=lambda: lora.routing_all(0))
    anti = Stream(model, tok, "anti")
    # base = the unadapted weights, alpha 1: the adapted model's output
    assert proxy_generate(Stream(model, tok, "base"), expert, anti, PROMPTS, GREEDY) == adapted
    # and a different base is steered by the adapter's difference without a second copy of `model`
    steered = proxy_generate(Stream(base, tok, "base"), expert, anti, PROMPTS, GREEDY)
    assert steered != plain(base, tok)


def test_each_stream_formats_the_request_its_own_way(models):
    base, tok, other, otok = models
    chat = lambda t: tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                             add_generation_prompt=True)
    out = proxy_generate(Stream(base, tok, "base", format=chat), Stream(other, otok, "expert"),
                         Stream(other, otok, "anti"), PROMPTS, GREEDY, alpha=1.0)
    assert out == plain(base, tok, [chat(p) for p in PROMPTS])


def test_generator_protocol(models):
    base, tok, other, otok = models
    gen = ProxyGenerator(Stream(base, tok, "base"), Stream(other, otok, "expert"), Stream(base, tok, "anti"))
    assert gen.generate(PROMPTS, GREEDY) == plain(other, otok)
    with pytest.raises(ValueError, match="adapters"):
        gen.generate(PROMPTS, GREEDY, adapters=[0] * len(PROMPTS))


def test_a_different_vocabulary_is_refused_with_names(models):
    base, tok, _, _ = models
    small_tok = tiny_tokenizer(vocab_size=300)
    with pytest.raises(VocabularyError, match="'base' and 'expert' do not share a vocabulary"):
        ProxyGenerator(Stream(base, tok, "base"), Stream(base, small_tok, "expert"), Stream(base, tok, "anti"))
