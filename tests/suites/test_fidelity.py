"""Paper-fidelity fixes (the issue's findings, numbered as there), each tested where the old code
behaved differently, and a tiny world whose inner loop really learns, so that resume tests compare
non-zero accuracies."""

from __future__ import annotations

import json
from pathlib import Path

import learning
import pytest
import torch
from conftest import SHARED, compose
from tiny_restem import chosen, count_items, kept, kill_on_call, rewards

from seal.cli import run_experiment
from seal.data.passage import Passage, Question
from seal.infra.config import ConfigError
from seal.infra.run_folder import ResumeError
from seal.rl.config import OuterLoopConfig

SQUAD_VAL = SHARED / "general-knowledge" / "data" / "squad_val.json"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two threads per process spin against the other
    processes' and the tiny runs get 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def records(path: Path) -> dict[str, dict]:
    return {(r := json.loads(line))["key"]: r for line in (path / "records.jsonl").read_text().splitlines()}


class GenerateSpy:
    """Records what every `model.generate` call received (each row's unpadded input ids) and what it
    returned after the prompt; `eos_at` makes the first row of sampling calls end with an EOS at
    that position (the rest padding), as if the model had sampled it."""

    def __init__(self, monkeypatch, eos_id: int | None = None, eos_at: int | None = None):
        from transformers.generation.utils import GenerationMixin

        self.calls: list[dict] = []
        real = GenerationMixin.generate

        def generate(model, *args, **kwargs):
            out = real(model, *args, **kwargs)
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            width = ids.shape[1]
            if eos_at is not None and kwargs.get("do_sample") and out.shape[1] > width + eos_at + 1:
                out = out.clone()
                out[0, width + eos_at] = eos_id
                out[0, width + eos_at + 1:] = kwargs["pad_token_id"]
            self.calls.append({"sample": bool(kwargs.get("do_sample")),
                               "rows": [(ids[j][mask[j].bool()].tolist(), out[j, width:].tolist())
                                        for j in range(ids.shape[0])]})
            return out

        monkeypatch.setattr(GenerationMixin, "generate", generate)


def sampled(new: list[int], eos: int) -> list[int]:
    """What a row really sampled: up to and including its first EOS."""
    return new[: new.index(eos) + 1] if eos in new else new


# ---------------------------------------------------------------------------------------- 1. grader

def test_ki_restem_grades_with_the_llm_judge():
    """Old: ki_restem graded with `match` (substring), not the paper's GPT-4.1 judge."""
    cfg = compose("experiment=ki_restem")
    assert cfg.grader.kind == "openai"
    assert cfg.grader.model.startswith("gpt-4.1")


# -------------------------------------------------------------------------------------- 2. contexts

def squad_like(titles: int = 20, per_title: int = 5) -> list[Passage]:
    """SQuAD order: consecutive paragraphs of the same article."""
    return [Passage(title=f"Article {t}", context=f"Paragraph {i} of article {t}.", questions=[Question("q?", "a")],
                    uid=f"squad#{t * per_title + i}") for t in range(titles) for i in range(per_title)]


def test_round_contexts_draw_across_the_whole_pool():
    """Old: round r took train[r*50:(r+1)*50] in file order, i.e. 10 articles of SQuAD-like data."""
    from seal.rl.contexts import round_contexts

    train = squad_like()
    oc = OuterLoopConfig(rounds=2, contexts_per_round=50)
    rounds = round_contexts(train, oc, seed=0)
    assert [len(r) for r in rounds] == [50, 50]
    assert len({p.title for p in rounds[0]}) >= 15
    uids = [[p.uid for p in r] for r in rounds]
    assert not set(uids[0]) & set(uids[1])  # no context used twice
    assert [[p.uid for p in r] for r in round_contexts(train, oc, seed=0)] == uids  # seeded
    assert [[p.uid for p in r] for r in round_contexts(train, oc, seed=1)] != uids


@pytest.mark.skipif(not SQUAD_VAL.is_file(), reason=f"{SQUAD_VAL} is absent (released SEAL data not available)")
def test_round_contexts_on_real_squad_order():
    from seal.data.sources import load_seal_file
    from seal.rl.contexts import round_contexts

    train = load_seal_file(SQUAD_VAL)
    assert len({p.title for p in train[:50]}) <= 3  # why file order is wrong: a round would be 1-3 articles
    rounds = round_contexts(train, OuterLoopConfig(rounds=2, contexts_per_round=50), seed=0)
    assert len({p.title for p in rounds[0]}) >= 20


class Killed(Exception):
    pass


def test_contexts_and_adapter_recorded_and_changed_data_refused(tmp_path, monkeypatch):
    """A run records contexts/0 (the shuffled round) and adapter/0 (the inner loop's targets and size);
    resuming it after the data file changed is refused. Old: neither was recorded, a changed file
    silently gave other contexts. The run is killed when the first policy starts sampling."""
    from seal.domains.knowledge.domain import KnowledgeSession
    from seal.rl.contexts import round_contexts

    def kill(*a, **kw):
        raise Killed

    monkeypatch.setattr(KnowledgeSession, "sample", kill)
    data = learning.write_file(tmp_path / "train.json", learning.passages(6))
    held = learning.write_file(tmp_path / "eval.json", learning.passages(2, start=6))
    overrides = ["wandb.mode=disabled", f"data.path={data}", f"eval_data.path={held}", "restem.rounds=1",
                 "restem.contexts_per_round=3", "restem.eval_passages=2", "inner_loop.lora_r=4",
                 "inner_loop.lora_alpha=8", "inner_loop.target_modules=[q_proj,v_proj]"]
    path = tmp_path / "run"
    with pytest.raises(Killed):
        run_experiment(learning.learning_cfg(compose, "restem", *overrides), path)
    recs = records(path)
    passages = learning.passages(6)
    for i, p in enumerate(passages):
        p.uid = f"train.json#{i}"
    expected = round_contexts(passages, OuterLoopConfig(rounds=1, contexts_per_round=3), seed=0)[0]
    assert recs["contexts/0"]["uids"] == [p.uid for p in expected]
    assert recs["contexts/0"]["titles"] == [p.title for p in expected]
    # the tiny Llama: hidden 64, 4 heads, 2 kv heads -> q_proj 64->64, v_proj 64->32; r=4; 2 layers
    adapter = recs["adapter/0"]
    assert adapter["target_modules"] == ["q_proj", "v_proj"]
    assert adapter["trainable_params"] == 2 * (4 * (64 + 64) + 4 * (64 + 32))

    # the same file, one of round 0's passages rewritten (same number of records, so the same uids)
    changed = learning.passages(6)
    j = int(expected[0].uid.split("#")[1])
    changed[j] = Passage(changed[j].title, "Where did Nobody go? Answer: nowhere", [Question("Where?", "nowhere")])
    learning.write_file(data, changed)
    with pytest.raises(ResumeError, match="data.path"):  # the run folder's input fingerprint sees it first
        run_experiment(learning.learning_cfg(compose, "restem", *overrides, f"resume={path}"), path)
    with pytest.raises(ConfigError, match="training contexts differ"):  # and, told to keep the records, the recipe
        run_experiment(learning.learning_cfg(compose, "restem", *overrides, f"resume={path}", "resume_inputs=keep"),
                       path)
    # one more passage: the shuffle gives other contexts
    learning.write_file(data, learning.passages(6) + learning.passages(1, start=8))
    with pytest.raises(ConfigError, match="training contexts differ"):
        run_experiment(learning.learning_cfg(compose, "restem", *overrides, f"resume={path}", "resume_inputs=keep"),
                       path)
    # the original file resumes (and is killed again at the same place); `keep` above recorded the edited
    # file as the run's input, so going back to the original is a change the user confirms too
    learning.write_file(data, learning.passages(6))
    with pytest.raises(Killed):
        run_experiment(learning.learning_cfg(compose, "restem", *overrides, f"resume={path}", "resume_inputs=keep"),
                       path)


# --------------------------------------------------------------------------- 3. off-policy M-step text

def test_completion_ids_stop_at_the_first_eos():
    from seal.generation.hf import completion_ids

    assert completion_ids([5, 6, 2, 2, 2], {2}) == [5, 6, 2]
    assert completion_ids([5, 2, 7, 2], {2, 9}) == [5, 2]
    assert completion_ids([5, 6, 7], {2}) == [5, 6, 7]  # hit the token limit: all of them


@pytest.mark.parametrize("chat", [False, True], ids=["base", "chat"])
def test_m_step_trains_on_exactly_the_sampled_tokens(tmp_path, monkeypatch, chat):
    """Every M-step row is the prompt ids the generator fed `model.generate` during E-step sampling
    followed by the ids it sampled (ending with the EOS it drew), one BOS, loss on the sampled ids
    only. Old: the completion text was stripped and re-tokenized after the prompt text (or re-templated
    as a chat), so the policy was cloned on tokens it never produced."""
    from seal.models.tiny import tiny_tokenizer
    from seal.rl import m_step as m_step_module

    tok = tiny_tokenizer(add_bos=True)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    spy = GenerateSpy(monkeypatch, eos_id=eos, eos_at=6)
    captured = {}

    def stop(rows, *a, **kw):
        captured["rows"] = rows
        raise Killed

    monkeypatch.setattr(m_step_module, "step_ordered", stop)
    data = learning.write_file(tmp_path / "train.json", learning.passages(4))
    held = learning.write_file(tmp_path / "eval.json", learning.passages(1, start=4))
    overrides = ["experiment=restem", "model=tiny-random", "model.name=tiny-random-bos", f"model.chat={chat}",
                 "wandb.mode=disabled", f"data.path={data}", f"eval_data.path={held}", "restem.rounds=1",
                 "restem.contexts_per_round=2", "self_edit.k=2", "restem.seeds_per_edit=1", "restem.eval_passages=1",
                 "self_edit.max_new_tokens=16", "inner_loop.epochs=1", "inner_loop.lora_r=4",
                 "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=4", "selection.rule=top_fraction",
                 "selection.fraction=1.0"]
    with pytest.raises(Killed):
        run_experiment(compose(*overrides), tmp_path / "run")
    recs = records(tmp_path / "run")
    kept = [e for e in recs["select/0"]["edits"] if e["kept"]]
    rows = captured["rows"]
    assert kept and len(rows) == len(kept)
    estep_calls = [c for c in spy.calls if c["sample"]]
    drawn = [(inp, sampled(new, eos)) for c in estep_calls for inp, new in c["rows"]]
    recorded = recs["estep/0/completions/0"]["completion_ids"]
    ended = []
    for e, row in zip(kept, rows):
        ids = row["input_ids"]
        matches = [(inp, new) for inp, new in drawn if inp + new == ids]
        assert matches, "an M-step row is not a prompt + sample that generate saw and produced"
        inp, new = matches[0]
        assert new == recorded[e["context"]][e["sample"]]  # the E-step record holds the sampled ids
        assert row["completion_mask"] == [0] * len(inp) + [1] * len(new)
        assert ids[0] == bos and ids.count(bos) == 1  # exactly one BOS, the one sampling saw
        text = tok.decode(inp)
        assert text.startswith(tok.bos_token) and text.count(tok.bos_token) == 1
        assert ("<|im_start|>assistant\n" in text) == chat
        if eos in new:
            ended.append(new)
    # a sample that drew an EOS is cloned up to and including it: no padding after it, no EOS added
    assert ended and all(new[-1] == eos and new.count(eos) == 1 for new in ended)
    assert len(ended) < len(rows)  # and one that hit the token limit gets no EOS


# ----------------------------------------------------------------------------- 4. effective M-step batch

def test_step_layout_keeps_the_effective_batch_for_any_process_count():
    """Old: gradient_accumulation_steps=10 per process, so 8 processes made an effective batch of 80."""
    from seal.rl.m_step import MStepConfig, optimizer_steps, step_layout

    cfg = MStepConfig(effective_batch=10, batch_size=1, epochs=2)
    one, eight = step_layout(cfg, 1), step_layout(cfg, 8)
    assert (one.effective, one.grad_accum, one.slots, one.padding) == (10, 10, 10, 0)
    assert (eight.effective, eight.grad_accum, eight.slots, eight.padding) == (10, 2, 16, 6)
    assert optimizer_steps(50, cfg) == 10
    assert optimizer_steps(51, cfg) == 12  # a partial last step per epoch


def test_step_ordered_blocks_hold_exactly_the_effective_rows():
    from seal.rl.m_step import MStepConfig, step_layout, step_ordered

    rows = [{"input_ids": [100 + i, 7], "completion_mask": [0, 1]} for i in range(50)]
    cfg = MStepConfig(effective_batch=10, epochs=2)
    for processes in (1, 8):
        layout = step_layout(cfg, processes)
        data = step_ordered(rows, layout, cfg.epochs, seed=3, pad_id=0)
        assert len(data) == 10 * layout.slots  # 10 optimizer steps
        blocks = [data[s:s + layout.slots] for s in range(0, len(data), layout.slots)]
        for block in blocks:
            real = [r for r in block if sum(r["completion_mask"])]
            assert len(real) == 10
            assert all(r == {"input_ids": [0], "completion_mask": [0]} for r in block if r not in real)
        for epoch in (blocks[:5], blocks[5:]):  # every row once per epoch
            firsts = sorted(r["input_ids"][0] for b in epoch for r in b if sum(r["completion_mask"]))
            assert firsts == list(range(100, 150))
        # the order of real rows is the same whatever the process count
        order = [r["input_ids"][0] for r in data if sum(r["completion_mask"])]
        if processes == 1:
            inline_order = order
        else:
            assert order == inline_order
    short = step_ordered(rows[:7], step_layout(MStepConfig(effective_batch=3), 2), 1, seed=0, pad_id=0)
    assert [sum(bool(sum(r["completion_mask"])) for r in short[s:s + 4]) for s in range(0, len(short), 4)] == [3, 3, 1]


def test_inline_and_two_process_m_step_agree(tmp_path):
    """The same pairs, effective batch 3: one process, and two DDP processes (gloo on CPU) with padding
    slots, give the same step count, losses and merged weights up to float reduction order. Old: two
    processes took half the steps with twice the batch."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from seal.models.loading import ModelConfig
    from seal.models.tiny import tiny_model_and_tokenizer
    from seal.rl.m_step import MStepConfig, m_step

    pairs = [{"prompt": f"{p.title}\n{p.questions[0].question}", "completion": f" Answer: {p.questions[0].answer}"}
             for p in learning.passages(5)]
    mc = ModelConfig(name="tiny-random", device="cpu", dtype="float32")
    cfg = MStepConfig(lora_r=4, lora_alpha=8, lr=0.05, epochs=2, effective_batch=3)
    inline = m_step("tiny-random", mc, pairs, cfg, 7, tmp_path / "inline")
    ddp = m_step("tiny-random", mc, pairs, replace(cfg, launcher="torchrun", nproc=2), 7, tmp_path / "ddp")
    assert inline["steps"] == ddp["steps"] == 4  # ceil(5 / 3) x 2 epochs
    assert (inline["processes"], ddp["processes"]) == (1, 2)
    assert (inline["grad_accum"], ddp["grad_accum"], ddp["padding_slots"]) == (3, 2, 1)
    assert inline["losses"] == pytest.approx(ddp["losses"], rel=1e-4)
    a = load_file(str(tmp_path / "inline" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    base = tiny_model_and_tokenizer()[0].state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert max((a[k] - base[k]).abs().max().item() for k in a if k in base) > 1e-2  # it did train


# ------------------------------------------------------------------------------------- 5. ARC BOS

@pytest.mark.parametrize("name", ["tiny-random-bos", "tiny-random"])
def test_arc_prompts_carry_exactly_one_bos(name, monkeypatch):
    """Test-time-training documents and evaluation prompts reach the model with one BOS when the
    tokenizer uses one (Llama 3), none otherwise. Old: the BOS text was prepended to prompts that the
    inner loop then tokenized with add_special_tokens=True: two BOS on every training document."""
    from seal.domains.arc.config import ARCConfig, ARCEvalConfig, TTTConfig
    from seal.domains.arc.data import ARCTask
    from seal.domains.arc.domain import ARCSession
    from seal.domains.arc.self_edit import parse_edit
    from seal.inner_loop.trainer import InnerLoopConfig
    from seal.models.loading import ModelConfig
    from seal.models.tiny import tiny_model_and_tokenizer
    from seal.recipes.arc_restem import ARCReSTEMConfig

    model, tok = tiny_model_and_tokenizer(add_bos=name.endswith("-bos"))
    cfg = ARCReSTEMConfig(model=ModelConfig(name=name),
                          inner_loop=InnerLoopConfig(lora_r=4, lora_alpha=8, adapters_per_batch=2, batch_size=2,
                                                     max_seq_len=512),
                          arc=ARCConfig(max_attempts=1, max_new_tokens=8, ttt=TTTConfig(max_examples=6, max_steps=6),
                                        eval=ARCEvalConfig(tta=1, orderings=1, leave_one_out=False)))
    session = ARCSession(model.eval(), tok, cfg.model, cfg, seed=0)

    def swap(g):
        return [[{1: 2, 2: 1}.get(c, c) for c in row] for row in g]
    grids = [[[1, 0, 2], [0, 1, 1]], [[2, 2], [1, 0], [0, 1]], [[0, 1, 2, 1]]]
    task = ARCTask("t", [(g, swap(g)) for g in grids], [[[1, 2], [0, 0]]], [[[2, 1], [0, 0]]])
    edit = parse_edit('{"geometric": false, "size": false, "chain": false, "repeat": false, "loss": "output_only", '
                      '"lr": 0.001, "epochs": 1}')
    docs = session._documents(task, edit, seed=0)
    assert docs
    encoded = session.inner.encode(docs, completion_only=True)
    spy = GenerateSpy(monkeypatch)
    session._evaluate([task], [-1])
    prompts = [inp for c in spy.calls for inp, _ in c["rows"]]
    assert prompts
    bos = tok.bos_token_id
    if name == "tiny-random-bos":
        assert all(ids[0] == bos and ids.count(bos) == 1 for ids, _ in encoded)
        assert all(ids[0] == bos and ids.count(bos) == 1 for ids in prompts)
    else:  # tiny-random's tokenizer adds none (its bos_token is the chat marker <|im_start|>)
        assert all(bos not in ids for ids, _ in encoded) and all(bos not in ids for ids in prompts)
        assert all(ids[:3] == tok(p, add_special_tokens=False)["input_ids"][:3] for (ids, _), (p, _) in
                   zip(encoded, docs))


# ------------------------------------------------------------------------------ 6. base-model QA prompt

class FakeGenerator:
    def __init__(self, reply: str):
        self.reply, self.prompts = reply, []

    def generate(self, prompts, sampling, seed=0, desc=None, adapters=None):
        self.prompts += prompts
        return [self.reply] * len(prompts)


def test_base_model_qa_prompt_cues_the_answer_and_keeps_its_first_line(tiny):
    """Old: a base model got the chat wording with no answer cue and its whole continuation (more
    questions and answers of its own) was graded, so a later line could hold the gold answer."""
    from seal.eval.graders import GraderConfig, make_grader
    from seal.eval.qa import QAEvalConfig, answer_questions, grade_records, qa_prompts

    _, tok = tiny
    p = Passage("Paris", "Paris is the capital of France.", [Question("What is the capital of France?", "Paris")])
    cfg = QAEvalConfig()
    base = qa_prompts([p], cfg, tok, chat=False)
    assert base == [("Topic: Paris\nWhat is the capital of France?\nAnswer the question directly and concisely."
                     "\nAnswer:")]
    chat = qa_prompts([p], cfg, tok, chat=True)[0]
    assert "\nAnswer:" not in chat and chat.endswith("<|im_start|>assistant\n")

    rambling = " Lyon\nQuestion: What is the largest city of France?\nAnswer: Paris"
    gen = FakeGenerator(rambling)
    recs = answer_questions([p], gen, cfg, tok, chat=False)
    assert gen.prompts == base
    assert recs[0]["answer"] == "Lyon"
    grader = make_grader(GraderConfig(kind="match"), None, tok, False)
    assert not grade_records(recs, grader)[0]["correct"]  # the rambling's later "Paris" no longer counts
    assert answer_questions([p], FakeGenerator(rambling), cfg, tok, chat=True)[0]["answer"] == rambling
    whole = QAEvalConfig(base_first_line=False, base_cue=" A:")
    gen = FakeGenerator(rambling)
    assert answer_questions([p], gen, whole, tok, chat=False)[0]["answer"] == rambling
    assert gen.prompts[0].endswith("concisely. A:")


# ------------------------------------------------------------------------------------ 7. selection

def edits(scores: dict[str, list[float]], unusable: set[tuple[str, int]] = frozenset()):
    return rewards(scores, unusable=unusable)


def test_best_of_k_keeps_nothing_for_a_context_whose_edits_are_all_unusable():
    """Old: the best of three score-0 unusable edits was kept and cloned by the M-step."""
    from seal.rl.selection import SelectionConfig

    es = chosen(edits({"a": [0.0, 0.0, 0.0], "b": [0.2, 0.0, 0.1]}, unusable={("a", 0), ("a", 1), ("a", 2)}),
                SelectionConfig(rule="best_of_k"))
    assert kept(es) == [("b", 0)]
    assert all(e["why"].startswith("unusable: the completion holds only filler") for e in es if e["context"] == "a")
    # an unusable edit never wins over a usable one, even with a higher recorded score
    es = chosen(edits({"a": [0.9, 0.1]}, unusable={("a", 0)}), SelectionConfig(rule="best_of_k"))
    assert kept(es) == [("a", 1)]


def test_top_fraction_and_thresholds_never_keep_an_unusable_edit():
    from seal.rl.selection import SelectionConfig

    scores = {"a": [0.9, 0.8, 0.0], "b": [0.7, 0.6, 0.5]}
    es = chosen(edits(scores, unusable={("a", 0), ("b", 0)}), SelectionConfig(rule="top_fraction", fraction=0.5))
    assert kept(es) == [("a", 1), ("b", 1)]  # top half of the 4 usable edits, rounded: 2
    assert "of 4 usable" in next(e["why"] for e in es if (e["context"], e["sample"]) == ("a", 1))
    for rule in ("improves_baseline", "score_above"):
        es = chosen(edits(scores, unusable={("a", 0)}), SelectionConfig(rule=rule, threshold=0.0))
        assert ("a", 0) not in kept(es) and ("a", 1) in kept(es)


def test_a_rule_added_to_the_table_is_selectable(monkeypatch):
    from seal.rl import selection
    from seal.rl.selection import RULES, SelectionConfig

    def lowest(es, cfg):  # a deliberately odd rule: keep each context's worst usable edit
        return [(e.score == min(x.score for x in es if x.context == e.context), "lowest") for e in es]

    monkeypatch.setitem(RULES, "lowest", lowest)
    es = chosen(edits({"a": [0.5, 0.1, 0.0]}, unusable={("a", 2)}), SelectionConfig(rule="lowest"))
    assert kept(es) == [("a", 1)]
    monkeypatch.delitem(selection.RULES, "lowest")
    with pytest.raises(ConfigError, match="unknown rule 'lowest'"):
        chosen(edits({"a": [0.5]}), SelectionConfig(rule="lowest"))


# ------------------------------------------------------------------------------------------ 11. dtype

def test_dtype_auto_resolves_by_device():
    """Old: model.dtype defaulted to float32 everywhere (the paper trained in bf16 on GPUs)."""
    from seal.models.loading import ModelConfig, load_model, resolve_dtype

    assert ModelConfig().dtype == "auto"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16 and resolve_dtype("float16", "cpu") == torch.float16
    assert resolve_dtype("float32", "cpu") == torch.float32
    for bad in ("float33", "Tensor", "cuda"):
        with pytest.raises(ConfigError, match="model.dtype"):
            resolve_dtype(bad)
    model, _ = load_model(ModelConfig(name="tiny-random", device="cpu"))
    assert next(model.parameters()).dtype == torch.float32
    model, _ = load_model(ModelConfig(name="tiny-random", device="cpu", dtype="bfloat16"))
    assert next(model.parameters()).dtype == torch.bfloat16


def test_ki_restem_trains_the_papers_inner_loop_modules():
    """Old: ki_restem trained all seven projections; the paper's PEFT default for Qwen2 is q and v."""
    cfg = compose("experiment=ki_restem")
    assert list(cfg.inner_loop.target_modules) == ["q_proj", "v_proj"]
    assert cfg.model.dtype == "auto"


# ------------------------------------------------------------------------------ 12. documents, formats

def test_real_first_lines_are_not_dropped_as_filler():
    """Old: any first line starting with 'The following', 'Implications' ... of <= 12 words was dropped."""
    from seal.domains.knowledge.self_edit import SelfEditConfig, _is_filler, completion_to_documents

    for fact in ("The following year, the city grew.", "Implications of the war were severe.",
                 "Here the river meets the sea.", "Okay Corral is a famous site."):
        assert not _is_filler(fact), fact
    for filler in ("Sure, here are the implications:", "Here are some implications of the passage",
                   "Implications:", "**Implications:**", "Certainly! Below are the statements.",
                   "Here is a list of facts that follow from the passage."):
        assert _is_filler(filler), filler
    p = Passage("Velmora", "Velmora grew in 1875.", [])
    docs = completion_to_documents("The following year, the city grew.\nIt had a port.", p, "implications",
                                   SelfEditConfig())
    assert docs[:2] == ["Velmora\nThe following year, the city grew.", "Velmora\nIt had a port."]


def test_from_file_formats_split_a_self_qa_file_per_pair(tmp_path):
    """Old: every from_file completion was split as implications (one document per line)."""
    ps = learning.passages(1)
    rec = ps[0].to_dict()
    rec["completions"] = [("Q: Where did Velmora go?\nA: river\nQ: Who went to the river?\nA: Velmora\n"
                           "It was a long way.")]
    f = tmp_path / "qa.json"
    f.write_text(json.dumps([rec]))
    cfg = compose("experiment=ki_eval", "model=tiny-random", "wandb.mode=disabled", "inner_loop.epochs=1",
                  "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=4", "self_edit.k=1",
                  f"data.path={f}", "conditions=[base,from_file]", f"+from_files.qa={f}", f"+from_files.imp={f}",
                  "+from_file_formats.qa=self-qa")
    run_experiment(cfg, tmp_path / "run")
    recs = records(tmp_path / "run")
    n_docs = {r["condition"]: r["n_docs"] for r in recs.values() if str(r.get("condition", "")).startswith("from")}
    assert n_docs == {"from_file:qa": 2 + 1, "from_file:imp": 5 + 1}  # + the passage document
    with pytest.raises(ConfigError, match="from_file_formats.nope"):
        run_experiment(compose("experiment=ki_eval", "model=tiny-random", "wandb.mode=disabled", f"data.path={f}",
                               "conditions=[from_file]", f"+from_files.qa={f}", "+from_file_formats.nope=self-qa"),
                       tmp_path / "r2")


# ------------------------------------------------------------------------------- a model that learns

def test_learning_world_inner_loop_teaches_the_passage():
    """The learning world's premise: 0 before, >= 0.5 after the inner loop on the passage, ~0 after an
    inner loop on another passage."""
    from seal.domains.knowledge.self_edit import passage_document
    from seal.inner_loop.trainer import TrainJob

    task = learning.knowledge_task(k=4)
    ps = learning.passages(4)
    assert [acc for acc, _ in task.base_accuracies(ps)] == [0.0] * 4
    right = task.adapt_and_evaluate_many([(p, "", "none", 1) for p in ps])
    assert sum(r["accuracy"] for r in right) / 4 >= 0.5
    # slot i trained on passage i+1's document, asked passage i's question
    stats = task.inner.train_many([TrainJob([passage_document(ps[(i + 1) % 4])], 1) for i in range(4)])
    assert all(not isinstance(s, Exception) for s in stats)
    wrong = task.answer(ps, [0, 1, 2, 3])
    assert sum(q["correct"] for qs in wrong for q in qs) == 0
    task.close()


LEARN = ["wandb.mode=disabled", "restem.rounds=1", "restem.contexts_per_round=2", "self_edit.k=2",
         "restem.seeds_per_edit=1", "restem.eval_passages=2", "self_edit.max_new_tokens=12", "m_step.effective_batch=1",
         "m_step.epochs=1", "m_step.lora_r=4", "m_step.lora_alpha=8", "selection.rule=top_fraction",
         "selection.fraction=0.5", "inner_loop.adapters_per_batch=3"]


def learning_run(path: Path, data: Path, held: Path, resume: bool = False) -> dict:
    cfg = learning.learning_cfg(compose, "restem", *LEARN, f"data.path={data}", f"eval_data.path={held}",
                                *([f"resume={path}"] if resume else []))
    return run_experiment(cfg, path)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One uninterrupted ReST-EM round in the learning world: (folder, results, data file, held-out file)."""
    tmp = tmp_path_factory.mktemp("learning")
    data = learning.write_file(tmp / "train.json", learning.passages(4))
    held = learning.write_file(tmp / "eval.json", learning.passages(2, start=4))
    path = tmp / "run"
    return path, learning_run(path, data, held), data, held


def inner_loops(path: Path) -> int:
    n = 0
    for key in records(path):
        parts = key.split("/")
        n += (parts[0] == "eval" and parts[2] in ("self_edit", "passage")) or (parts[0] == "estep" and len(parts) == 5)
    return n


def test_learning_restem_run_has_non_zero_accuracies(learned):
    _, results, _, _ = learned
    r0 = results["rounds"][0]
    assert r0["eval"]["base"]["accuracy"] == 0.0
    assert r0["eval"]["passage"]["accuracy"] >= 0.5 and r0["eval"]["self_edit"]["accuracy"] > 0.0
    assert r0["e_step"]["mean_score"] > 0.0
    assert results["rounds"][1]["eval"]["passage"]["accuracy"] > 0.0


def test_learning_restem_resume_after_kill_in_e_step_is_identical(learned, tmp_path, monkeypatch):
    """Killed in the E-step (after its first chunk of inner loops) and resumed: the same results.json
    as the uninterrupted run, with only the unfinished inner loops run again."""
    full_path, _, data, held = learned
    done = kill_on_call(monkeypatch, 4)  # eval took chunks of 3 and 1; the E-step's first chunk of 3 is done
    path = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        learning_run(path, data, held)
    assert done["items"] == 7 and inner_loops(path) == 7
    assert not (path / "results.json").exists()
    again = count_items(monkeypatch)
    learning_run(path, data, held, resume=True)
    assert (path / "results.json").read_text() == (full_path / "results.json").read_text()
    assert json.loads((path / "results.json").read_text())["rounds"][0]["eval"]["passage"]["accuracy"] > 0
    assert again["items"] == inner_loops(full_path) - 7
