"""The worker-process generation path that `backend=vllm` uses, driven on CPU with its PEFT engine:
adapter files and ids, the worker's start/restart/errors, equality with in-process routed
generation, config validation, and the error when vLLM is missing."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from seal.generation.backends import BackendConfig, make_generator, validate
from seal.generation.engine_worker import AdapterStore, EngineWorker, WorkerGenerator
from seal.generation.errors import BackendError
from seal.generation.hf import HFGenerator, SamplingConfig
from seal.generation.vllm import VLLM_RANKS, max_lora_rank, require_vllm
from seal.infra.config import ConfigError
from seal.inner_loop.multi_lora import MultiLoRA
from seal.inner_loop.trainer import InnerLoopConfig
from seal.models.tiny import tiny_model_and_tokenizer

TARGETS = ["q_proj", "v_proj", "down_proj"]
PROMPTS = ["The quick brown fox", "Velmora was founded", "Answer the question", "In 1874 the town",
           "Rewrite the passage", "The capital"]
GREEDY = SamplingConfig(max_new_tokens=8, temperature=0.0, batch_size=4)


def save_tiny(path, seed: int) -> str:
    model, tok = tiny_model_and_tokenizer(seed=seed)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return save_tiny(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def other_folder(tmp_path_factory) -> str:
    return save_tiny(tmp_path_factory.mktemp("tiny1"), seed=1)


def routed_model(folder, slots=3, r=4):
    """The in-process side: the saved model with a MultiLoRA whose slots hold distinct, non-trivial adapters."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    lora = MultiLoRA(model, TARGETS, r=r, alpha=2 * r, slots=slots)
    g = torch.Generator().manual_seed(0)
    for s in range(slots):
        lora.reset(s, seed=s)
        for b in lora.B:
            b[s].copy_(torch.randn(b[s].shape, generator=g) * 0.5)  # B = 0 would make every adapter a no-op
    return model, tok, lora


def test_adapter_files_load_in_peft_with_fresh_ids_and_are_removed(folder, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, _, lora = routed_model(folder)
    store = AdapterStore(r=4, alpha=8, target_modules=TARGETS, root=str(tmp_path))
    refs = [store.write(lora.slot_state(s)) for s in (0, 1)]
    store.remove(refs[0])
    refs.append(store.write(lora.slot_state(2)))
    assert [r.id for r in refs] == [1, 2, 3]  # never reused, even after a removal
    assert not Path(refs[0].path).exists() and Path(refs[1].path).is_dir()
    config = json.loads((Path(refs[1].path) / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and not config["modules_to_save"]
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), refs[1].path)
    loaded = {n.replace("base_model.model.", "").replace(".default", ""): p for n, p in peft_model.named_parameters()
              if "lora_" in n}
    expected = lora.slot_state(1)
    assert loaded.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(loaded[k], v), k
    store.close()
    assert not store.root.exists()


def test_adapter_store_refuses_what_vllm_cannot_serve(folder, tmp_path):
    _, _, lora = routed_model(folder)
    store = AdapterStore(r=4, alpha=8, target_modules=TARGETS, root=str(tmp_path))
    state = lora.slot_state(0)
    with pytest.raises(BackendError, match="modules_to_save"):
        store.write({**state, "lm_head.weight": torch.zeros(2, 2)})
    with pytest.raises(BackendError, match="ranks"):
        AdapterStore(r=8, alpha=16, target_modules=TARGETS, root=str(tmp_path)).write(state)


def test_worker_generation_equals_in_process_routed_generation(folder, tmp_path):
    model, tok, lora = routed_model(folder)
    adapters = [-1, 0, 1, 2, 0, -1]
    local = HFGenerator(model, tok, router=lora).generate(PROMPTS, GREEDY, adapters=adapters)
    base = HFGenerator(model, tok, router=lora).generate(PROMPTS, GREEDY)  # no routing: the base model
    assert local != base  # the adapters change the outputs, so the comparison below can fail
    gen = WorkerGenerator(EngineWorker("peft", folder, {"device": "cpu"}), AdapterStore(4, 8, TARGETS, str(tmp_path)),
                          lora)
    try:
        assert gen.generate(PROMPTS, GREEDY, adapters=adapters) == local
        assert gen.generate(PROMPTS, GREEDY) == base
        assert not any(gen.store.root.iterdir())  # every adapter folder removed after its call
        assert gen.store._next_id == 4  # three adapters written, one fresh id each
    finally:
        gen.close()


def test_worker_restarts_as_a_fresh_process_on_a_new_model(folder, other_folder):
    worker = EngineWorker("peft", folder, {"device": "cpu"})
    try:
        greedy = {k: v for k, v in vars(GREEDY).items()}
        first = worker.call("generate", PROMPTS, greedy, 0, None)
        pid = worker.pid
        worker.restart(other_folder)
        assert worker.pid != pid and worker.proc.is_alive()
        second = worker.call("generate", PROMPTS, greedy, 0, None)
        assert second != first  # another model answers now
        with pytest.raises(BackendError, match="no_such_method"):
            worker.call("no_such_method")
        assert worker.call("generate", PROMPTS, greedy, 0, None) == second  # an error does not kill the worker
    finally:
        worker.close()
    assert worker.proc is None


def test_worker_that_cannot_start_says_why(tmp_path):
    with pytest.raises(BackendError, match="failed to start"):
        EngineWorker("peft", str(tmp_path / "missing"), {"device": "cpu"})


def test_backend_config_validation():
    validate(BackendConfig(), lora_r=32)
    with pytest.raises(ConfigError, match="backend.name"):
        validate(BackendConfig(name="tgi"), lora_r=32)
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        validate(BackendConfig(gpu_memory_utilization=1.0), lora_r=32)
    with pytest.raises(ConfigError, match="max_loras"):
        validate(BackendConfig(max_loras=-1), lora_r=32)
    with pytest.raises(ConfigError, match="lora_r=1024"):
        validate(BackendConfig(name="vllm"), lora_r=1024)
    validate(BackendConfig(name="peft"), lora_r=1024)  # only vLLM limits the rank


def test_vllm_rank_is_the_smallest_allowed_that_fits():
    assert [max_lora_rank(r) for r in (1, 8, 9, 32, 33, 300, 512)] == [8, 8, 16, 32, 64, 320, 512]
    assert set(VLLM_RANKS) >= {max_lora_rank(r) for r in range(1, 513)}


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error_naming_the_fix(folder):
    with pytest.raises(BackendError, match=r"pip install -e '\.\[vllm\]'"):
        require_vllm()
    model, tok, lora = routed_model(folder)
    with pytest.raises(BackendError, match="backend=hf"):
        make_generator(BackendConfig(name="vllm"), folder, model, tok, lora, InnerLoopConfig(lora_r=4), k=3, seed=0)


def test_knowledge_task_scores_the_same_through_the_worker(folder):
    """The whole adapt-and-evaluate path: backend=peft (worker, adapter files) == backend=hf."""
    from seal.data.passage import Passage, Question
    from seal.domains.knowledge.self_edit import SelfEditConfig
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.graders import GraderConfig
    from seal.eval.qa import QAEvalConfig
    from seal.models.loading import ModelConfig, load_model

    passages = [Passage(title=t, context=c, questions=[Question(question=q, answer=a)], uid=t) for t, c, q, a in [
        ("Velmora", "Velmora was founded in 1874 by Ansel Quorrin.", "Who founded Velmora?", "Ansel Quorrin"),
        ("Tarvik", "The Tarvik river is 212 km long.", "How long is the Tarvik?", "212 km"),
        ("Quorrin", "Ansel Quorrin was a slate merchant.", "What was Quorrin's trade?", "slate")]]
    items = [(p, "", "none", 10 + i) for i, p in enumerate(passages)]  # train on the passage itself
    inner = InnerLoopConfig(lora_r=4, lora_alpha=8, epochs=2, lr=5e-2, target_modules=TARGETS, adapters_per_batch=2)
    out = {}
    for name in ("hf", "peft"):
        mcfg = ModelConfig(name=folder, device="cpu")
        model, tok = load_model(mcfg)
        task = KnowledgeTask(model, tok, mcfg, inner, QAEvalConfig(max_new_tokens=6), GraderConfig(kind="match"),
                             SelfEditConfig(), backend=replace(BackendConfig(), name=name))
        try:
            out[name] = [[q["answer"] for q in r["questions"]] for r in task.adapt_and_evaluate_many(items)]
        finally:
            task.close()
    assert out["peft"] == out["hf"]


def test_vllm_extra_is_the_range_the_pinned_trl_accepts():
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    def vllm_spec(dist):
        reqs = [Requirement(r) for r in requires(dist) or []]
        return next(r.specifier for r in reqs if r.name == "vllm" and r.marker and "vllm" in str(r.marker))

    assert vllm_spec("seal-rl") == vllm_spec("trl")
