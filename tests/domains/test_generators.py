"""Multi-call self-edit generators (entigraph, active_reading, prompt_set) and every self-edit's cost.

Most tests run the real `KnowledgeTask` (tiny model, chat template, stage batching, budget, cost) with
only the model's text scripted (`Scripted`), so that parsing, pairing and accounting are exercised on
known text; the last ones generate with the real tiny model end to end."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from seal.data.passage import Passage, Question
from seal.domains.knowledge.generators import (
    GENERATORS,
    TEMPLATES_NEEDED,
    GeneratedEdit,
    check_any_format,
    parse_entities,
    parse_list,
    relation_sets,
)
from seal.domains.knowledge.self_edit import SelfEditConfig, SelfEditError, completion_to_documents
from seal.infra.config import ConfigError, derive_seed, to_dataclass

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "seal" / "configs" / "self_edit" / "default.yaml"
P = [Passage(title="Velmora", context="Velmora was founded in 1874 by Ansel Quorrin on the Tarvik river.",
             questions=[Question("Who founded Velmora?", "Ansel Quorrin")], uid="t#0"),
     Passage(title="Tarvik", context="The Tarvik river is 212 km long and carries slate barges.",
             questions=[Question("How long is the Tarvik?", "212 km")], uid="t#1")]


def se_cfg(**generators) -> SelfEditConfig:
    cfg = to_dataclass(SelfEditConfig, yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8")), "self_edit")
    return replace(cfg, max_new_tokens=12, generators=replace(cfg.generators, **generators))


class Scripted:
    """Stands in for the model's text only (the generate interface of `HFGenerator`): answers each prompt
    by what it asks for, one token id per word, and records every call."""

    def __init__(self, entities: str = "1. Ansel Quorrin\n2. **Tarvik**: a river\n- ansel quorrin\n3. slate",
                 strategies: str = "1. Restate every fact.\n2. Ask a question per date.\n3. Compare the people.",
                 words: int = 0):
        self.entities, self.strategies, self.words = entities, strategies, words
        self.calls: list[tuple[list[str], int]] = []

    def generate(self, prompts, sampling, seed=0, desc=None, adapters=None, with_ids=False):
        self.calls.append((list(prompts), seed))
        out = []
        for p in prompts:
            text = self.answer(p)
            ids = list(range(len(text.split())))
            out.append((text, ids) if with_ids else text)
        return out

    def answer(self, prompt: str) -> str:
        if prompt.rstrip().endswith("Entities:"):
            return self.entities
        if "Study strategies:" in prompt:
            return self.strategies
        if m := re.search(r"How (.+?) and (.+?) are connected:\s*$", prompt.strip().splitlines()[-1]):
            return f"{m.group(1)} relates to {m.group(2)} somehow."
        if m := re.search(r"Way of studying: (.+)", prompt):
            return f"Applied: {m.group(1)}"
        cue = prompt.strip().splitlines()[-1].split()[0].rstrip(":")  # "Summary:" -> "Summary answer word ..."
        return " ".join([cue, "answer"] + ["word"] * self.words)


def content(rows) -> list:
    """What a resumed run must reproduce exactly (seconds are the machine's, not the method's)."""
    return [[(e.text, e.tokens, e.calls, e.why) for e in row] for row in rows]


@pytest.fixture
def task_with(tiny):
    """A real KnowledgeTask on the tiny model whose generator only scripts the text."""
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.graders import GraderConfig
    from seal.eval.qa import QAEvalConfig
    from seal.inner_loop.trainer import InnerLoopConfig
    from seal.models.loading import ModelConfig

    model, tok = tiny

    def make(cfg: SelfEditConfig, script: Scripted | None = None):
        task = KnowledgeTask(model, tok, ModelConfig(name="tiny-random", chat=False, device="cpu"),
                             InnerLoopConfig(lora_r=4, lora_alpha=8, adapters_per_batch=2), QAEvalConfig(),
                             GraderConfig(kind="match"), cfg)
        if script is not None:
            task.gen = script
        return task

    return make


def test_parse_entities_strips_markers_dedupes_and_caps():
    text = ("Entities:\n1. Ansel Quorrin\n- **Tarvik river**: a river in the north\n* ansel  quorrin\n"
            "2) Slate (the stone)\nThe founding of the town in the year 1874 by a merchant who sold slate\n\n3. 1874.")
    assert parse_entities(text, "Velmora", cap=10) == ["Velmora", "Ansel Quorrin", "Tarvik river", "Slate", "1874"]
    assert parse_entities(text, None, cap=2) == ["Ansel Quorrin", "Tarvik river"]
    assert parse_entities("Velmora, the Tarvik, Ansel Quorrin", "Velmora", cap=10) == ["Velmora", "the Tarvik",
                                                                                        "Ansel Quorrin"]
    assert parse_entities("", "Velmora", cap=10) == ["Velmora"]
    assert parse_entities("1. Paris, France\n2. J. Smith", None, cap=10) == ["Paris, France", "J. Smith"]
    assert parse_list("Here are the strategies:\n1. Restate.\n2. Restate\n3. Quiz yourself.", cap=5) == [
        "Restate", "Quiz yourself"]



def test_list_parsing_strips_a_label_and_splits_commas_only_between_names():
    # the prompt's cue echoed before the list is a label, not an entity
    assert parse_entities("Entities: Marie Curie, Radium", "Curie", 12) == ["Curie", "Marie Curie", "Radium"]
    assert parse_entities("**Key entities**: Marie Curie, Pierre Curie, and radium", None, 12) == [
        "Marie Curie", "Pierre Curie", "radium"]
    assert parse_entities("Entities:\nMarie Curie, Radium, Polonium", None, 12) == ["Marie Curie", "Radium", "Polonium"]
    # a comma inside one name does not split it, nor does a number's
    assert parse_entities("Washington, D.C.", None, 12) == ["Washington, D.C."]
    assert parse_entities("Entities: John Smith, Jr.", None, 12) == ["John Smith, Jr."]
    assert parse_entities("Austin, TX", None, 12) == ["Austin, TX"]
    assert parse_entities("Velmora, 1,000 tons of slate", None, 12) == ["Velmora", "1,000 tons of slate"]
    # one entity per line: commas inside a line are part of it
    assert parse_entities("1. Washington, D.C.\n2. Paris, France", None, 12) == ["Washington, D.C.", "Paris, France"]
    # prose is not a list of names
    assert parse_entities("The town was founded in 1874, and it grew quickly.", None, 12) == []
    # strategies are sentences: one per line, never split at commas, a label stripped
    strategies = "Study strategies: Restate each fact, then quiz yourself"
    assert parse_list(strategies, cap=4, commas=False) == ["Restate each fact, then quiz yourself"]
    script = Scripted(strategies="1. Restate each fact, then quiz yourself\n2. Draw a timeline, with dates")
    assert parse_list(script.strategies, cap=4, commas=False) == ["Restate each fact, then quiz yourself",
                                                                  "Draw a timeline, with dates"]


def test_relation_sets_are_seeded_and_capped_by_max_calls():
    ents = ["A", "B", "C", "D", "E", "F"]
    one = relation_sets(ents, max_calls=4, triples=0, rng=random.Random(7))
    assert one == relation_sets(ents, max_calls=4, triples=0, rng=random.Random(7))
    assert len(one) == 4 and all(len(c) == 2 for c in one) and len(set(one)) == 4
    assert any(relation_sets(ents, 4, 0, random.Random(s)) != one for s in range(8))
    mixed = relation_sets(ents, max_calls=5, triples=2, rng=random.Random(1))
    assert [len(c) for c in mixed] == [2, 2, 2, 3, 3]  # triples count toward max_calls
    assert relation_sets(["A", "B"], max_calls=8, triples=3, rng=random.Random(0)) == [("A", "B")]


def test_entigraph_lists_then_relates_seeded_pairs_in_two_batched_stages(task_with):
    script = Scripted()
    task = task_with(se_cfg(max_calls=3), script)
    rows = task.generate_self_edits(P, "entigraph", k=2, seed=11)
    assert [len(r) for r in rows] == [2, 2]
    # two generate calls: every entity list together, then every relation together, each seeded by its stage
    assert [seed for _, seed in script.calls] == [derive_seed(11, "entities"), derive_seed(11, "relations")]
    assert len(script.calls[0][0]) == 4 and len(script.calls[1][0]) == 4 * 3
    for p, row in zip(P, rows):
        for e in row:
            parts = e.text.split("\n\n")
            assert len(parts) == 3 and all("relates to" in x for x in parts)
            named = {p.title, "Ansel Quorrin", "Tarvik", "slate"}
            for x in parts:
                a, b = re.match(r"(.+) relates to (.+) somehow\.", x).groups()
                assert {a, b} <= named and a != b
            answers = [len(x.split()) for x in parts] + [len(script.entities.split())]
            assert e.calls == 4 and e.tokens == sum(answers) and e.why is None and e.seconds >= 0
            docs = completion_to_documents(e.text, p, "entigraph", task.se_cfg)
            assert docs[:-1] == [f"{p.title}\n{x}" for x in parts] and docs[-1] == f"{p.title}\n{p.context}"
    # the pairs are drawn per self-edit: seeded, so the same seed gives the same text
    again = task_with(se_cfg(max_calls=3), Scripted()).generate_self_edits(P, "entigraph", k=2, seed=11)
    assert content(again) == content(rows)


def test_entigraph_with_fewer_than_two_entities_records_why(task_with):
    script = Scripted(entities="Entities:\n")
    task = task_with(se_cfg(title_entity=False), script)
    (e,), = task.generate_self_edits(P[:1], "entigraph", k=1, seed=0)
    assert e.text == "" and e.calls == 1 and "fewer than 2 entities" in e.why
    assert len(script.calls) == 1  # no relation stage for nothing to relate


def test_token_budget_stops_further_calls(task_with):
    names = ["set_paraphrase", "set_summary", "set_quiz", "set_child", "set_timeline", "set_key_facts"]
    script = Scripted(words=8)  # every answer is 10 words (ids): "<cue> answer word x8"
    task = task_with(se_cfg(prompt_set=names, token_budget=25), script)
    rows = task.generate_self_edits(P, "prompt_set", k=1, seed=3)
    for (e,) in rows:  # 10, 20, 30 >= 25: the fourth call is never issued
        assert e.calls == 3 and e.tokens == 30 and len(e.text.split("\n\n")) == 3
    # under a budget the calls go in waves (the i-th prompt of every self-edit), one seeded batch each
    assert [seed for _, seed in script.calls] == [derive_seed(3, "prompts", w) for w in range(3)]
    assert all(len(prompts) == 2 for prompts, _ in script.calls)
    free = Scripted(words=8)
    (e,), _ = task_with(se_cfg(prompt_set=names), free).generate_self_edits(P, "prompt_set", k=1, seed=3)
    assert e.calls == 6 and e.tokens == 60 and len(free.calls) == 1 and len(free.calls[0][0]) == 12


def test_any_token_budget_batches_in_waves_so_a_budget_that_never_binds_still_changes_the_seeds(task_with):
    """Documented (generators.py, GeneratorConfig.token_budget): a budget > 0 issues each stage's calls in
    waves, each its own seeded batch, so even a budget that is never reached samples other text than 0."""
    names = ["set_summary", "set_quiz"]
    big = Scripted(words=8)
    rows = task_with(se_cfg(prompt_set=names, token_budget=10**6), big).generate_self_edits(P, "prompt_set", 1, 3)
    assert [seed for _, seed in big.calls] == [derive_seed(3, "prompts", 0), derive_seed(3, "prompts", 1)]
    free = Scripted(words=8)
    same = task_with(se_cfg(prompt_set=names), free).generate_self_edits(P, "prompt_set", 1, 3)
    assert [seed for _, seed in free.calls] == [derive_seed(3, "prompts")]
    assert content(rows) == content(same)  # the same (scripted) text and cost; a real model's text would differ


def test_active_reading_applies_each_strategy(task_with):
    script = Scripted(strategies="Here are some strategies:\n1. Restate every fact.\n2. Ask a question per date.\n"
                                 "3. Compare the people.\n4. Draw a map.")
    task = task_with(se_cfg(strategies=3), script)
    (e,), = task.generate_self_edits(P[:1], "active_reading", k=1, seed=5)
    assert [seed for _, seed in script.calls] == [derive_seed(5, "strategies"), derive_seed(5, "apply")]
    applied = script.calls[1][0]
    assert len(applied) == 3
    for strategy, prompt in zip(["Restate every fact", "Ask a question per date", "Compare the people"], applied):
        assert f"Way of studying: {strategy}" in prompt and P[0].context in prompt
    assert e.text.split("\n\n") == ["Applied: Restate every fact", "Applied: Ask a question per date",
                                    "Applied: Compare the people"]
    assert e.calls == 4
    none = task_with(se_cfg(), Scripted(strategies="Strategies:")).generate_self_edits(P[:1], "active_reading", 1, 5)
    assert none[0][0].text == "" and "no study strategy" in none[0][0].why


def test_prompt_set_issues_one_call_per_prompt(task_with):
    cfg = se_cfg()
    script = Scripted()
    rows = task_with(cfg, script).generate_self_edits(P, "prompt_set", k=2, seed=9)
    assert len(script.calls) == 1 and script.calls[0][1] == derive_seed(9, "prompts")
    prompts = script.calls[0][0]
    assert len(prompts) == len(P) * 2 * len(cfg.generators.prompt_set) and len(cfg.generators.prompt_set) >= 5
    for name in cfg.generators.prompt_set:  # every template asked once per self-edit, filled with its passage
        filled = [cfg.templates[name].format(title=p.title, context=p.context) for p in P]
        assert sum(prompts.count(f) for f in filled) == 4
    for row in rows:
        for e in row:
            assert e.calls == len(cfg.generators.prompt_set) == len(e.text.split("\n\n"))


def test_single_call_cost_is_the_sampled_ids_with_the_real_tiny_model(task_with):
    task = task_with(se_cfg())
    rows = task.generate_self_edits(P, "implications", k=2, seed=4)
    sampled = task.sample(P, "implications", k=2, seed=4, with_ids=True)
    assert [[e.text for e in r] for r in rows] == [[t for t, _ in r] for r in sampled]  # same seed, same texts
    assert [[e.tokens for e in r] for r in rows] == [[len(ids) for _, ids in r] for r in sampled]
    assert all(e.calls == 1 and e.seconds > 0 and e.cost()["tokens"] == e.tokens for r in rows for e in r)
    none = task.generate_self_edits(P, "none", k=1, seed=4)
    assert none == [[GeneratedEdit("")], [GeneratedEdit("")]]


@pytest.mark.parametrize("fmt", sorted(GENERATORS))
def test_multi_call_formats_with_the_real_tiny_model_are_reproducible(task_with, fmt):
    task = task_with(se_cfg(max_calls=2, strategies=2, prompt_set=["set_summary", "set_key_facts"]))
    first = task.generate_self_edits(P, fmt, k=1, seed=21)
    assert content(first) == content(task.generate_self_edits(P, fmt, k=1, seed=21))  # identical text and cost
    for p, (e,) in zip(P, first):
        assert e.calls >= 1 and e.tokens > 0
        assert e.tokens <= e.calls * task.se_cfg.max_new_tokens + e.calls  # the ids, EOS included
        if e.why is None:
            assert completion_to_documents(e.text, p, fmt, task.se_cfg)[-1] == f"{p.title}\n{p.context}"
        else:
            assert e.text == ""


def test_paragraph_split_drops_a_leading_filler_line():
    cfg = se_cfg()
    text = ("Sure, here is a summary:\nVelmora is old.\nIt is on the Tarvik.\n\nQ: Who? A: Quorrin.\n\n\n  \n"
            "The Tarvik is long.")
    docs = completion_to_documents(text, P[0], "prompt_set", cfg)
    assert docs == ["Velmora\nVelmora is old.\nIt is on the Tarvik.", "Velmora\nQ: Who? A: Quorrin.",
                    "Velmora\nThe Tarvik is long.", f"Velmora\n{P[0].context}"]
    lines = completion_to_documents(text, P[0], "prompt_set", replace(cfg, generators=replace(cfg.generators,
                                                                                               split="lines")))
    assert len(lines) == 5  # filler dropped, one per non-empty line, plus the passage


def test_parts_with_blank_lines_give_one_document_each_in_ki_eval_and_in_pooling(task_with, monkeypatch):
    """A part holding blank lines (a quiz's "Q: ...\n\nA: ...") is stored with them collapsed, so the
    self-edit splits back into exactly its parts: ki_eval's documents and ki_cpt's pooled ones are one per
    part, and max_segments (a single-call cap) drops none of them."""
    from seal.domains.knowledge.conditions import pooled_documents

    answers = ["Q: Who founded Velmora?\n\nA: Ansel Quorrin.", "Velmora is old.\n   \n\n\nIt is on the Tarvik.",
               "  Summary:\n\n  The Tarvik is long.  "]

    def quiz(drafts, stages, g):
        stages.run("quiz", [(d, "Quiz:") for d in drafts])
        for d in drafts:
            d.parts += answers

    monkeypatch.setitem(GENERATORS, "quiz", quiz)
    cfg = replace(se_cfg(), max_segments=2)
    (e,), = task_with(cfg, Scripted()).generate_self_edits(P[:1], "quiz", k=1, seed=0)
    parts = ["Q: Who founded Velmora?\nA: Ansel Quorrin.", "Velmora is old.\nIt is on the Tarvik.",
             "Summary:\n  The Tarvik is long."]
    assert e.text.split("\n\n") == parts and re.split(r"\n\s*\n", e.text) == parts
    docs = completion_to_documents(e.text, P[0], "quiz", cfg)
    assert docs == [f"Velmora\n{x}" for x in parts] + [f"Velmora\n{P[0].context}"]  # 3 parts despite max_segments=2
    pooled, skipped = pooled_documents(P[:1], {P[0].uid: [e.text, ""]}, True, "quiz", cfg)
    assert pooled == [f"Velmora\n{P[0].context}"] + docs[:-1] and skipped == 1  # the passage once, first
    # generators.split is honoured by the pooling too; a single-call format stays whole
    whole = replace(cfg, generators=replace(cfg.generators, split="whole"))
    assert pooled_documents(P[:1], {P[0].uid: [e.text]}, False, "quiz", whole)[0] == [
        f"Velmora\n{P[0].context}", e.text]
    lines = replace(cfg, generators=replace(cfg.generators, split="lines"))
    assert len(pooled_documents(P[:1], {P[0].uid: [e.text]}, True, "quiz", lines)[0]) == 1 + 6
    assert pooled_documents(P[:1], {P[0].uid: [e.text]}, True)[0] == [f"Velmora\n{P[0].context}",
                                                                       f"Velmora\n{e.text}"]
    assert completion_to_documents("a\nb\nc", P[0], "implications", cfg)[:-1] == ["Velmora\na", "Velmora\nb"]


def test_format_checks_name_the_key():
    cfg = se_cfg()
    for fmt in [*GENERATORS, "implications", "none"]:
        check_any_format(fmt, cfg)
    with pytest.raises(SelfEditError, match=r"formats: unknown format 'poetry' \(choose one of .*entigraph"):
        check_any_format("poetry", cfg, where="formats")
    templates = {k: v for k, v in cfg.templates.items() if k != "entigraph_pair"}
    with pytest.raises(SelfEditError, match="no prompt named entigraph_pair"):
        check_any_format("entigraph", replace(cfg, templates=templates))
    with pytest.raises(SelfEditError, match="template=config"):
        check_any_format("prompt_set", replace(cfg, template="from_file", template_file="x.json"))
    assert set(TEMPLATES_NEEDED) == set(GENERATORS)


def test_users_can_add_a_generator(task_with, monkeypatch):
    def echo(drafts, stages, g):
        texts = stages.run("echo", [(d, f"{d.passage.title}\nRepeat:") for d in drafts])
        for d, t in zip(drafts, texts):
            d.parts += [t, t]

    monkeypatch.setitem(GENERATORS, "echo", echo)
    check_any_format("echo", se_cfg())
    (e,), _ = task_with(se_cfg(), Scripted()).generate_self_edits(P, "echo", k=1, seed=0)
    assert e.text == "Repeat answer\n\nRepeat answer" and e.calls == 1


def test_restem_refuses_a_multi_call_format(tmp_path):
    from conftest import compose

    from seal.cli import run_experiment

    cfg = compose("experiment=restem", "model=tiny-random", "self_edit.format=entigraph")
    with pytest.raises(ConfigError, match=r"self_edit.format=entigraph: a multi-call format .*M-step"):
        run_experiment(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / "records.jsonl").exists()
