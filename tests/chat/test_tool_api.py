"""The made-up tool API: example generation, the canonical call format, safe parsing and scoring."""

from __future__ import annotations

import builtins
import string
from collections import Counter

import pytest

from seal.chat.tool_api import (
    TOOLS,
    ToolExample,
    api_docs,
    format_call,
    make_examples,
    parse_call,
    score_call,
    split_of,
)

DOCK = ToolExample('Dock Osk-Tarin at bay 3.', 'vrell_dock(bay=3, craft="Osk-Tarin")', "vrell_dock",
                   {"bay": 3, "craft": "Osk-Tarin"})


def test_api_shape_and_docs():
    assert len(TOOLS) == 6 and len({t.name for t in TOOLS}) == 6
    docs = api_docs(TOOLS)
    for t in TOOLS:
        assert 1 <= len(t.args) <= 3 and 4 <= len(t.templates) <= 6
        assert f"{t.name}(" in docs and t.desc in docs
        names = {a.name for a in t.args}
        for a in t.args:
            assert a.desc in docs
            assert (a.lo < a.hi) if a.kind == "int" else len(a.choices) >= 3
        for tpl in t.templates:  # every template mentions every argument, and nothing else
            assert {f for _, f, _, _ in string.Formatter().parse(tpl) if f} == names, tpl


def test_deterministic_for_a_seed_and_seeds_differ():
    assert make_examples(40, 7, "train") == make_examples(40, 7, "train")
    assert make_examples(40, 7, "test") == make_examples(40, 7, "test")
    assert make_examples(40, 7, "train") != make_examples(40, 8, "train")
    assert [e.call for e in make_examples(40, 7, "train")] != [e.call for e in make_examples(40, 8, "train")]


def test_train_and_test_never_share_a_call():
    train = {e.call for s in range(5) for e in make_examples(100, s, "train")}
    test = {e.call for s in range(5) for e in make_examples(100, s, "test")}
    assert train and test and not train & test
    for e in make_examples(60, 3, "test"):
        assert split_of(e.tool, e.args) == "test"
    with pytest.raises(ValueError):
        make_examples(5, 0, "validation")


@pytest.mark.parametrize("n", [6, 10, 50, 100])
@pytest.mark.parametrize("split", ["train", "test"])
def test_balanced_unique_and_consistent(n, split):
    examples = make_examples(n, 0, split)
    assert len(examples) == n
    counts = Counter(e.tool for e in examples)
    assert set(counts) == {t.name for t in TOOLS}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len({e.call for e in examples}) == n  # no call repeated within a split at these sizes
    for e in examples:
        assert e.call == format_call(e.tool, e.args)
        for v in e.args.values():
            assert str(v) in e.request
    assert len({e.request for e in examples}) == n
    if n >= 50:  # shuffled, not left in round-robin order
        assert [e.tool for e in examples] != [TOOLS[i % len(TOOLS)].name for i in range(n)]


def test_format_call_order_and_quoting():
    assert format_call("vrell_dock", {"craft": "Osk-Tarin", "bay": 3}) == 'vrell_dock(bay=3, craft="Osk-Tarin")'
    assert format_call("ostrik_relay", {"alert": "all-clear", "channel": 12}) == (
        'ostrik_relay(channel=12, alert="all-clear")')


def test_format_parse_round_trip_every_tool():
    seen = set()
    for e in make_examples(60, 1, "train") + make_examples(60, 1, "test"):
        assert parse_call(e.call) == (e.tool, e.args)
        assert format_call(*parse_call(e.call)) == e.call
        seen.add(e.tool)
    assert seen == {t.name for t in TOOLS}


@pytest.mark.parametrize("text", [
    'Sure! `vrell_dock(bay=3, craft="Osk-Tarin")`.',
    'vrell_dock(bay=3, craft="Osk-Tarin")',
    '```python\nvrell_dock(bay=3, craft="Osk-Tarin")\n```',
    "Calling vrell_dock( bay = 3 ,craft='Osk-Tarin' ) now (as requested).",
    'Here\'s the call: vrell_dock(craft="Osk-Tarin", bay=3). Anything else?',
    'vrell_dock(bay=3, craft="Osk-Tarin") (bay three).',
    'vrell_dock(bay=3, craft="Osk-Tarin") and then glimber_scan(sector="Varnholt", depth=4)',
])
def test_parse_call_extracts_from_noisy_text(text):
    assert parse_call(text) == ("vrell_dock", {"bay": 3, "craft": "Osk-Tarin"})


def test_parse_call_values():
    assert parse_call('f(a="x)y", b=-2, c=1.5)') == ("f", {"a": "x)y", "b": -2, "c": 1.5})
    assert parse_call("f()") == ("f", {})


@pytest.mark.parametrize("text", [
    "", "no call here", "vrell_dock", "vrell_dock(bay=3", "vrell_dock bay=3",
    '__import__("os").system("x")',
    'os.system(cmd="x")',
    'vrell_dock(bay=int("3"), craft="Osk-Tarin")',
    'vrell_dock(bay=f(x=3))',
    "(lambda: vrell_dock(bay=3))()",
    "vrell_dock(bay=lambda: 3)",
    "vrell_dock(3, craft='Osk-Tarin')",
    "vrell_dock(bay=3, bay=4)",
    "vrell_dock(**{'bay': 3})",
    "vrell_dock(bay=True)",
    "vrell_dock(bay=[3])",
    "vrell_dock(bay=x)",
    "vrell_dock(bay=3).system(cmd='x')",
    "vrell_dock(bay=3)(x=1)",
    'vrell_dock(bay=-"3")',
])
def test_parse_call_rejects(text):
    assert parse_call(text) is None


def test_parse_call_never_executes(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    target = tmp_path / "pwned"
    payloads = [
        f'__import__("pathlib").Path("{target}").touch()',
        f'open(file="{target}", mode="w")',  # well-formed call: parsed as data, not opened
        f'(lambda: open(file="{target}", mode="w"))()',
    ]
    assert parse_call(payloads[0]) is None
    assert parse_call(payloads[1]) == ("open", {"file": str(target), "mode": "w"})
    assert parse_call(payloads[2]) is None
    assert not target.exists()


@pytest.mark.parametrize("output, exact, tool, parsed", [
    ('vrell_dock(bay=3, craft="Osk-Tarin")', True, True, True),
    ('Sure: `vrell_dock(craft="Osk-Tarin", bay=3)`.', True, True, True),  # argument order swapped
    ("vrell_dock( bay=3,craft = 'Osk-Tarin' )", True, True, True),
    ('vrell_dock(bay=3, craft=" Osk-Tarin ")', True, True, True),
    ('glimber_scan(bay=3, craft="Osk-Tarin")', False, False, True),  # wrong tool
    ('vrell_dock(bay=4, craft="Osk-Tarin")', False, True, True),  # wrong value
    ('vrell_dock(bay=3, craft="Osk-Taryn")', False, True, True),
    ('vrell_dock(bay=3)', False, True, True),  # missing argument
    ('vrell_dock(bay=3, craft="Osk-Tarin", priority=1)', False, True, True),  # extra argument
    ('vrell_dock(bay="3", craft="Osk-Tarin")', False, True, True),  # string for an int
    ('vrell_dock(bay=3.0, craft="Osk-Tarin")', False, True, True),
    ('vrell_dock(dock=3, craft="Osk-Tarin")', False, True, True),  # wrong argument name
    ("I am not sure which tool to use.", False, False, False),
    ('vrell_dock(3, "Osk-Tarin")', False, False, False),
])
def test_score_call(output, exact, tool, parsed):
    assert score_call(output, DOCK) == {"exact": exact, "tool": tool, "parsed": parsed}
