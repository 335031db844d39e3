"""A tiny world in which the inner loop really changes closed-book accuracy.

The tiny random model answers nothing correctly, so resume and equality tests on it alone compare
zeros. Here every passage is one line, "{question} Answer: {answer}", and the model is a base model
(`model.chat=false`) asked "{title}\\n{question} Answer:" (`qa_eval.template` + `qa_eval.base_cue`).
The passage's training document, "{title}\\n{question} Answer: {answer}" (`passage_document`), is
exactly that prompt followed by the answer, so a few LoRA steps teach the continuation: accuracy
goes from 0 to 1 on the passage it was trained on and stays 0 on the others (every answer is a
different word). The inner-loop settings below do this in about a second on `tiny-random-bos`.
"""

from __future__ import annotations

import json
from pathlib import Path

from seal.data.passage import Passage, Question

NAMES = ["Velmora", "Ansel", "Quorrin", "Tarvik", "Brenna", "Oskel", "Mirth", "Dunlow", "Pella", "Corvin",
         "Sable", "Ibbet"]
ANSWERS = ["river", "fox", "dog", "bank", "town", "capital", "lazy", "passage", "title", "context", "quick", "brown"]

MODEL = "tiny-random-bos"
QA_TEMPLATE = "{title}\n{question}"  # + qa_eval.base_cue " Answer:"
BASE_CUE = " Answer:"
LR, EPOCHS, LORA_R = 1e-2, 10, 8  # learns every passage of the world in 10 steps (measured: 4/4 passages)

# Hydra overrides of the learning world (the template holds a newline: `learning_cfg` sets it)
OVERRIDES = [f"model.name={MODEL}", "model.chat=false", "qa_eval.base_cue=' Answer:'", "qa_eval.max_new_tokens=4",
             f"inner_loop.lr={LR}", f"inner_loop.epochs={EPOCHS}", f"inner_loop.lora_r={LORA_R}",
             f"inner_loop.lora_alpha={2 * LORA_R}", "inner_loop.batch_size=1", "inner_loop.max_seq_len=256",
             "grader=match"]


def passages(n: int, start: int = 0, prefix: str = "w") -> list[Passage]:
    """Passages start .. start+n-1 of the world: one question each, every answer a different word."""
    if start + n > len(NAMES):
        raise ValueError(f"the learning world has {len(NAMES)} passages")
    out = []
    for i in range(start, start + n):
        q = Question(f"Where did {NAMES[i]} go?", ANSWERS[i])
        out.append(Passage(title=f"Note {i}", context=f"{q.question} Answer: {q.answer}", questions=[q],
                           uid=f"{prefix}#{i}"))
    return out


def write_file(path: Path, items: list[Passage]) -> Path:
    """A SEAL-format JSON file of the passages (`data.path=` / `eval_data.path=`)."""
    path.write_text(json.dumps([p.to_dict() for p in items], indent=1))
    return path


def learning_cfg(compose, experiment: str, *overrides: str):
    """`compose(...)` of an experiment in the learning world: the tiny model config, the overrides above,
    then `overrides`, then the QA template."""
    cfg = compose(f"experiment={experiment}", "model=tiny-random", *OVERRIDES, *overrides)
    cfg.qa_eval.template = QA_TEMPLATE
    return cfg


def knowledge_task(k: int = 4):
    """A KnowledgeTask on the learning world's model and settings (K=k adapters per batch)."""
    from seal.domains.knowledge.self_edit import SelfEditConfig
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.graders import GraderConfig
    from seal.eval.qa import QAEvalConfig
    from seal.inner_loop.trainer import InnerLoopConfig
    from seal.models.loading import ModelConfig, load_model

    mc = ModelConfig(name=MODEL, chat=False, device="cpu", dtype="float32")
    model, tok = load_model(mc)
    inner = InnerLoopConfig(lora_r=LORA_R, lora_alpha=2 * LORA_R, lr=LR, epochs=EPOCHS, batch_size=1,
                            adapters_per_batch=k, max_seq_len=256)
    qa = QAEvalConfig(template=QA_TEMPLATE, base_cue=BASE_CUE, max_new_tokens=4)
    return KnowledgeTask(model, tok, mc, inner, qa, GraderConfig(kind="match"), SelfEditConfig())
