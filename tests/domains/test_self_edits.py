"""Self-edit prompts and how a completion becomes training documents."""

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from seal.data.passage import Passage, Question
from seal.domains.knowledge.directive import DIRECTIVE_FORMATS, DirectiveConfig, prompt_fields
from seal.domains.knowledge.self_edit import (
    FORMATS,
    MODEL_FORMATS,
    SelfEditConfig,
    SelfEditError,
    check_format,
    completion_to_documents,
    self_edit_prompt,
    split_qa,
)

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "seal" / "configs" / "self_edit" / "default.yaml"

P = Passage(title="Velmora", context="Velmora was founded in 1874 by Ansel Quorrin on the Tarvik.",
            questions=[Question("Who founded Velmora?", "Ansel Quorrin")], uid="t#0")
PASSAGE_DOC = f"{P.title}\n{P.context}"


@pytest.fixture(scope="module")
def yaml_cfg() -> dict:
    return yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))


@pytest.fixture
def cfg(yaml_cfg) -> SelfEditConfig:
    return SelfEditConfig(**{**yaml_cfg, "directive": DirectiveConfig(**yaml_cfg["directive"])})


def body(docs: list[str]) -> list[str]:
    """Documents without the title prefix (all but the passage document)."""
    assert all(d.startswith(f"{P.title}\n") for d in docs)
    return [d[len(P.title) + 1:] for d in docs]


GPT_STYLE = """**Implications:**

1. Velmora is a town that was founded in 1874.
2. Ansel Quorrin founded Velmora.

3. The town lies on the Tarvik river.
"""


# ---------------------------------------------------------------------------------------------
# lines mode
# ---------------------------------------------------------------------------------------------

def test_one_document_per_non_empty_line_plus_passage(cfg):
    docs = completion_to_documents("Fact one.\n\n  Fact two.  \n\t\nFact three.", P, "implications", cfg)
    assert docs == [f"{P.title}\nFact one.", f"{P.title}\nFact two.", f"{P.title}\nFact three.", PASSAGE_DOC]


@pytest.mark.parametrize("filler", ["Sure, here are some implications:", "**Implications:**",
                                    "Here are the implications of the passage:", "Certainly! Here is a list.",
                                    "## Implications"])
def test_leading_filler_line_dropped(cfg, filler):
    docs = completion_to_documents(f"{filler}\nFact one.\nFact two.", P, "implications", cfg)
    assert body(docs[:-1]) == ["Fact one.", "Fact two."]
    assert docs[-1] == PASSAGE_DOC


def test_only_the_leading_filler_is_dropped(cfg):
    text = "Sure, here are some implications:\nFact one.\nHere are more facts about it:\nFact two."
    docs = completion_to_documents(text, P, "implications", cfg)
    assert body(docs[:-1]) == ["Fact one.", "Here are more facts about it:", "Fact two."]


def test_a_factual_first_line_is_kept(cfg):
    text = "Velmora was founded in 1874 and grew quickly over the following decades into a busy river port.\nB."
    docs = completion_to_documents(text, P, "implications", cfg)
    assert body(docs[:-1]) == [text.splitlines()[0], "B."]


def test_gpt41_style_completion(cfg):
    docs = completion_to_documents(GPT_STYLE, P, "implications", cfg)
    assert body(docs[:-1]) == ["Velmora is a town that was founded in 1874.", "Ansel Quorrin founded Velmora.",
                               "The town lies on the Tarvik river."]


def test_list_markers_stripped(cfg):
    text = "1. one\n2) two\n- three\n* four\n\u2022 five\n**6.** six\n(7) seven\n### eight"
    docs = completion_to_documents(text, P, "implications", cfg)
    assert body(docs[:-1]) == ["one", "two", "three", "four", "five", "six", "seven", "eight"]


def test_numbers_that_are_not_markers_are_kept(cfg):
    text = "1874 was the year of founding.\n3.5 thousand people live there.\n-5 degrees in winter."
    docs = completion_to_documents(text, P, "implications", cfg)
    assert body(docs[:-1]) == text.splitlines()


def test_marker_only_lines_vanish(cfg):
    docs = completion_to_documents("1. one\n- \n2.\n*\n2. two", P, "implications", cfg)
    assert body(docs[:-1]) == ["one", "two"]


def test_max_segments_cap(cfg):
    text = "\n".join(f"{i}. fact {i}" for i in range(1, 51))
    docs = completion_to_documents(text, P, "implications", replace(cfg, max_segments=7))
    assert body(docs[:-1]) == [f"fact {i}" for i in range(1, 8)]
    assert docs[-1] == PASSAGE_DOC
    assert len(completion_to_documents(text, P, "implications", cfg)) == cfg.max_segments + 1


def test_cap_counts_after_filler_is_dropped(cfg):
    text = "Sure, here are some implications:\nA\nB\nC"
    docs = completion_to_documents(text, P, "implications", replace(cfg, max_segments=2))
    assert body(docs[:-1]) == ["A", "B"]


def test_switches_off(cfg):
    text = "Sure, here are some implications:\n1. A\n- B"
    off = replace(cfg, drop_filler=False, strip_markers=False, title_prefix=False, append_passage=False)
    assert completion_to_documents(text, P, "implications", off) == ["Sure, here are some implications:", "1. A",
                                                                       "- B"]
    assert completion_to_documents(text, P, "implications", replace(off, drop_filler=True)) == ["1. A", "- B"]
    assert completion_to_documents(text, P, "implications", replace(off, strip_markers=True)) == [
        "Sure, here are some implications:", "A", "B"]
    assert completion_to_documents(text, P, "implications", replace(off, title_prefix=True)) == [
        f"{P.title}\nSure, here are some implications:", f"{P.title}\n1. A", f"{P.title}\n- B"]
    assert completion_to_documents(text, P, "implications", replace(off, append_passage=True))[-1] == PASSAGE_DOC


def test_split_whole(cfg):
    text = "Sure, here are some implications:\n1. A\n\n2. B\n"
    docs = completion_to_documents(text, P, "implications", replace(cfg, split="whole"))
    assert docs == [f"{P.title}\n{text.strip()}", PASSAGE_DOC]


def test_unknown_split_mode(cfg):
    with pytest.raises(SelfEditError, match="self_edit.split: unknown mode 'sentences'"):
        completion_to_documents("A\nB", P, "implications", replace(cfg, split="sentences"))
    docs = completion_to_documents("A\nB\n\nC", P, "implications", replace(cfg, split="paragraphs"))
    assert docs == [f"{P.title}\nA\nB", f"{P.title}\nC", PASSAGE_DOC]  # one document per paragraph


# ---------------------------------------------------------------------------------------------
# self-qa
# ---------------------------------------------------------------------------------------------

def test_self_qa_one_document_per_pair(cfg):
    text = ("Here are some questions and answers:\n"
            "Q: Who founded Velmora?\nA: Ansel Quorrin.\n\n"
            "Q: When was it founded?\nA: In 1874,\nduring the river boom.\n"
            "Q: Which river?\nA: The Tarvik.")
    docs = completion_to_documents(text, P, "self-qa", cfg)
    assert body(docs[:-1]) == ["Q: Who founded Velmora? A: Ansel Quorrin.",
                               "Q: When was it founded? A: In 1874, during the river boom.",
                               "Q: Which river? A: The Tarvik."]
    assert docs[-1] == PASSAGE_DOC


@pytest.mark.parametrize("text", [
    "**Q1:** Who?\n**A1:** Ansel.\n**Q2:** When?\n**A2:** 1874.",
    "Question 1: Who?\nAnswer: Ansel.\nQuestion 2: When?\nAnswer: 1874.",
    "1. Q: Who?\nA: Ansel.\n2. Q: When?\nA: 1874.",
    "- Q: Who?\n  A: Ansel.\n- Q: When?\n  A: 1874.",
])
def test_self_qa_pair_styles(cfg, text):
    docs = completion_to_documents(text, P, "self-qa", cfg)
    segs = body(docs[:-1])
    assert len(segs) == 2
    assert "Who?" in segs[0] and "Ansel." in segs[0] and "1874" not in segs[0]
    assert "When?" in segs[1] and "1874." in segs[1] and "Ansel" not in segs[1]
    assert not segs[0][0].isdigit() and not segs[0].startswith("-")  # marker stripped


def test_split_qa_without_leading_question():
    assert split_qa("Intro line\ncontinued\nQ: a?\nA: b") == ["Intro line continued", "Q: a? A: b"]


def test_self_qa_whole(cfg):
    text = "Q: a?\nA: b\nQ: c?\nA: d"
    assert completion_to_documents(text, P, "self-qa", replace(cfg, split="whole")) == [f"{P.title}\n{text}",
                                                                                         PASSAGE_DOC]


# ---------------------------------------------------------------------------------------------
# none, errors, formats
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("completion", ["", "ignored text"])
def test_none_gives_just_the_passage(cfg, completion):
    assert completion_to_documents(completion, P, "none", cfg) == [PASSAGE_DOC]
    assert completion_to_documents(completion, P, "none", replace(cfg, append_passage=False)) == [PASSAGE_DOC]


@pytest.mark.parametrize("completion", ["", "   ", "\n\n\t\n"])
def test_empty_completion_raises(cfg, completion):
    with pytest.raises(SelfEditError, match="empty completion"):
        completion_to_documents(completion, P, "implications", cfg)


@pytest.mark.parametrize("completion", ["Sure, here are some implications:", "**Implications:**\n\n",
                                        "Sure, here are some implications:\n1. \n- "])
def test_filler_only_completion_raises(cfg, completion):
    with pytest.raises(SelfEditError, match="only filler"):
        completion_to_documents(completion, P, "implications", cfg)


def test_filler_only_is_fine_when_not_dropped(cfg):
    docs = completion_to_documents("**Implications:**", P, "implications", replace(cfg, drop_filler=False))
    assert docs == [f"{P.title}\n**Implications:**", PASSAGE_DOC]


def test_check_format_unknown(cfg):
    with pytest.raises(SelfEditError, match=r"unknown format 'poetry'") as e:
        check_format("poetry", cfg)
    assert "implications" in str(e.value)  # lists the choices
    with pytest.raises(SelfEditError, match="'poetry'"):
        self_edit_prompt(P, "poetry", cfg)


def test_check_format_needs_a_template(cfg):
    with pytest.raises(SelfEditError, match=r"no prompt for format 'rewrite'"):
        check_format("rewrite", replace(cfg, templates={"implications": "{title} {context}"}))
    for fmt in FORMATS:
        check_format(fmt, cfg)  # every known format is accepted with the default templates


@pytest.mark.parametrize("fmt", ["none", "from_file"])
def test_formats_without_a_prompt(cfg, fmt):
    with pytest.raises(SelfEditError, match="no prompt"):
        self_edit_prompt(P, fmt, cfg)


def test_default_yaml_has_a_template_for_every_model_format(yaml_cfg):
    from seal.domains.knowledge.generators import TEMPLATES_NEEDED
    from seal.infra.config import to_dataclass

    g = to_dataclass(SelfEditConfig, yaml_cfg, "self_edit").generators
    for_generators = {t for need in TEMPLATES_NEEDED.values() for t in need(replace(g, triples=1))}
    assert set(yaml_cfg["templates"]) == set(MODEL_FORMATS) | for_generators  # and no template nothing uses
    assert yaml_cfg["format"] in FORMATS
    SelfEditConfig(**yaml_cfg)  # every key of the yaml is a config field


@pytest.mark.parametrize("fmt", MODEL_FORMATS)
def test_every_default_template_formats(cfg, fmt):
    weird = Passage(title="Title {x}", context="Braces {context} and {0} stay verbatim.\nSecond line.",
                    questions=[])
    prompt = self_edit_prompt(weird, fmt, cfg)
    assert weird.title in prompt and weird.context in prompt
    assert prompt.index(weird.title) < prompt.index(weird.context)
    raw = cfg.templates[fmt]
    assert "{title}" in raw and "{context}" in raw
    assert "{title}" not in prompt.replace(weird.title, "") and "{context}" not in prompt.replace(weird.context, "")
    if fmt in DIRECTIVE_FORMATS:  # the directive's syntax, allowed values and example are filled in too
        for key, value in prompt_fields(cfg.directive).items():
            raw = raw.replace("{" + key + "}", value)
    assert prompt == raw.replace("{title}", weird.title).replace("{context}", weird.context)
