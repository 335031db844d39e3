"""Property-based tests (hypothesis) for every parser of untrusted text: whatever the input, each
either returns a well-formed value or raises its own documented error, never anything else (no
KeyError / TypeError / UnicodeDecodeError escaping from deep inside)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seal.chat.cli import parse_command, parse_probe
from seal.chat.moderation import DefaultModerator, ModerationConfig
from seal.chat.tool_api import parse_call
from seal.data.passage import Passage, Question
from seal.data.sources import DataError, load_seal_file, passage_from_record
from seal.domains.arc.self_edit import ARCEdit, EditRejected, parse_edit
from seal.domains.knowledge.self_edit import MODEL_FORMATS, SelfEditConfig, SelfEditError, completion_to_documents
from seal.infra.config import ConfigError, to_dataclass

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PASSAGE = Passage(title="Velmora", context="Velmora was founded in 1874.", questions=[Question("When?", "1874")])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                      max_size=4), max_leaves=12)
texty = st.text() | st.lists(st.sampled_from(["Q:", "A:", "1.", "- ", "\n", "  ", "Question", "implications", "{",
                                               "}", '"', "é", "\x00", "\r\n"]) | st.text(max_size=6)).map("".join)


@SETTINGS
@given(text=texty, fmt=st.sampled_from(MODEL_FORMATS), split=st.sampled_from(["lines", "whole"]))
def test_self_edit_splitting(text, fmt, split):
    try:
        docs = completion_to_documents(text, PASSAGE, fmt, SelfEditConfig(split=split))
    except SelfEditError:
        return
    assert docs and all(isinstance(d, str) and d.strip() for d in docs)


arc_like = st.one_of(texty, json_values.map(json.dumps), st.fixed_dictionaries(
    {}, optional={"data_generation": json_values, "training": json_values, "use_basic_augmentations": json_values,
                  "learning_rate": json_values, "num_train_epochs": json_values, "strategy": json_values}
).map(json.dumps), texty.map(lambda t: "```json\n" + t + "\n```"))


@SETTINGS
@given(text=arc_like)
def test_arc_self_edit_config(text):
    try:
        edit = parse_edit(text)
    except EditRejected as e:
        assert str(e)
        return
    assert isinstance(edit, ARCEdit)


@SETTINGS
@given(rec=json_values)
def test_data_records(rec):
    try:
        p = passage_from_record(rec, "record 0")
    except DataError as e:
        assert "record 0" in str(e)
        return
    assert p.context.strip() and all(q.answer.strip() for q in p.questions)


@SETTINGS
@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) |
       json_values.map(lambda v: json.dumps({"data": v}).encode()), suffix=st.sampled_from([".json", ".jsonl"]))
def test_data_files(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("data") / f"passages{suffix}"
    path.write_bytes(data)
    try:
        passages = load_seal_file(path)
    except DataError as e:
        assert str(path) in str(e)
        return
    assert passages and all(isinstance(p, Passage) for p in passages)


@dataclass
class _Inner:
    lr: float = 1e-3
    modules: list[str] = field(default_factory=lambda: ["q"])


@dataclass
class _Root:
    name: str = "x"
    steps: int = 1
    inner: _Inner = field(default_factory=_Inner)


@SETTINGS
@given(node=st.dictionaries(st.sampled_from(["name", "steps", "inner", "other"]),
                            json_values | st.dictionaries(st.sampled_from(["lr", "modules", "bad"]), json_values,
                                                          max_size=3), max_size=4))
def test_config_validation(node):
    try:
        cfg = to_dataclass(_Root, node, "root")
    except ConfigError as e:
        assert "root" in str(e)
        return
    assert isinstance(cfg, _Root) and isinstance(cfg.inner, _Inner)


@SETTINGS
@given(line=texty)
def test_chat_commands(line):
    cmd, arg = parse_command(line)
    assert isinstance(cmd, str) and isinstance(arg, str) and arg == arg.strip()
    probe = parse_probe(arg)
    assert probe is None or (probe[0].strip() and probe[1].strip())


@SETTINGS
@given(text=st.text() | st.binary().map(lambda b: b.decode("latin-1")))
def test_chat_moderation(text):
    why = DefaultModerator(ModerationConfig()).check(text)
    assert why is None or (isinstance(why, str) and why)
    if "\x00" in text:
        assert why is not None


@SETTINGS
@given(text=texty | st.from_regex(r"[a-z_]{1,12}\((\w+=(\d+|'[^']*'|\[[^\]]*\])(, )?){0,3}\)"))
def test_tool_calls(text):
    out = parse_call(text)
    assert out is None or (isinstance(out[0], str) and isinstance(out[1], dict))
