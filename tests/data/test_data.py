"""Passage loading: SEAL-format JSON/JSONL, SQuAD layouts, the seal_eval subset, selection, bad input."""

import json
import random
from pathlib import Path

import pytest

from seal.data.passage import Passage, Question
from seal.data.sources import (
    DataConfig,
    DataError,
    group_squad_official,
    group_squad_rows,
    load_passages,
    load_seal_file,
    seal_eval_subset,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "seal"
GK = SHARED / "general-knowledge" / "data"


def rec(i: int, n_q: int = 2, **extra) -> dict:
    r = {"title": f"Title {i}", "context": f"Context number {i}.",
         "questions": [{"question": f"Q{i}.{j}?", "answer": f"A{i}.{j}"} for j in range(n_q)]}
    r.update(extra)
    return r


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


def write_jsonl(path: Path, objs) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def data_error(path: Path) -> str:
    with pytest.raises(DataError) as e:
        load_seal_file(path)
    return str(e.value)


# ---------------------------------------------------------------------------------------------
# SEAL-format files
# ---------------------------------------------------------------------------------------------

def test_json_list_loads_every_field(tmp_path):
    records = [rec(0), rec(1, n_q=3, completions=["c one", "c two"]), rec(2, n_q=0)]
    ps = load_seal_file(write_json(tmp_path / "set.json", records))
    assert [p.title for p in ps] == ["Title 0", "Title 1", "Title 2"]
    assert [p.context for p in ps] == ["Context number 0.", "Context number 1.", "Context number 2."]
    assert ps[1].questions == [Question(f"Q1.{j}?", f"A1.{j}") for j in range(3)]
    assert ps[1].completions == ["c one", "c two"]
    assert ps[0].completions == [] and ps[2].questions == []
    assert [p.uid for p in ps] == ["set.json#0", "set.json#1", "set.json#2"]
    # to_dict writes the record back in the same layout
    assert ps[1].to_dict() == records[1]
    assert ps[0].to_dict() == {**records[0], "completions": []}


def test_jsonl_loads_and_skips_blank_lines(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n\n" + json.dumps(rec(1, completions=["x"])) + "\n   \n", encoding="utf-8")
    ps = load_seal_file(path)
    assert [p.title for p in ps] == ["Title 0", "Title 1"]
    assert ps[1].completions == ["x"]
    assert [p.uid for p in ps] == ["set.jsonl#0", "set.jsonl#1"]


def test_jsonl_content_in_a_json_named_file_is_detected(tmp_path):
    ps = load_seal_file(write_jsonl(tmp_path / "lines.json", [rec(0), rec(1), rec(2)]))
    assert [p.title for p in ps] == ["Title 0", "Title 1", "Title 2"]


def test_json_and_jsonl_give_the_same_passages(tmp_path):
    records = [rec(i, n_q=i % 3 + 1, completions=[f"c{i}"]) for i in range(5)]
    a = load_seal_file(write_json(tmp_path / "a.json", records))
    b = load_seal_file(write_jsonl(tmp_path / "a.jsonl", records))
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b] == [{**r} for r in records]


def test_squad_style_answers_list_keeps_the_first(tmp_path):
    r = rec(0)
    r["questions"] = [{"question": "Who?", "answers": [{"text": "first", "answer_start": 0}, {"text": "second"}]},
                      {"question": "What?", "answers": ["plain", "other"]}]
    (p,) = load_seal_file(write_json(tmp_path / "s.json", [r]))
    assert p.questions == [Question("Who?", "first"), Question("What?", "plain")]


# ---------------------------------------------------------------------------------------------
# Bad input: one test each, the message names the file, the record and the field
# ---------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    msg = data_error(tmp_path / "nope.json")
    assert "nope.json" in msg and "no such file" in msg


def test_malformed_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"title": "x", "context": "y", "questions": []},\n {"title": ]', encoding="utf-8")
    msg = data_error(path)
    assert str(path) in msg and "malformed JSON" in msg and "line 2" in msg


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n" + json.dumps(rec(1)) + '\n{"title": "broken",\n', encoding="utf-8")
    msg = data_error(path)
    assert f"{path}:3" in msg and "malformed JSON line" in msg


def test_record_missing_a_field_names_file_record_and_field(tmp_path):
    records = [rec(i) for i in range(5)]
    del records[3]["context"]
    path = write_json(tmp_path / "missing.json", records)
    msg = data_error(path)
    assert str(path) in msg and "record 3" in msg and "'context'" in msg and "missing" in msg


def test_jsonl_record_missing_a_field_names_the_line(tmp_path):
    records = [rec(i) for i in range(3)]
    del records[1]["title"]
    path = write_jsonl(tmp_path / "missing.jsonl", records)
    msg = data_error(path)
    assert f"{path}:2" in msg and "'title'" in msg


def test_question_missing_answer_names_the_question(tmp_path):
    records = [rec(0), rec(1, n_q=3)]
    del records[1]["questions"][2]["answer"]
    msg = data_error(write_json(tmp_path / "q.json", records))
    assert "record 1" in msg and "questions[2]" in msg and "'answer'" in msg


def test_question_missing_question_text(tmp_path):
    records = [rec(0, n_q=2)]
    del records[0]["questions"][1]["question"]
    msg = data_error(write_json(tmp_path / "q.json", records))
    assert "record 0" in msg and "questions[1]" in msg and "'question'" in msg


@pytest.mark.parametrize("field,value,expect", [
    ("title", 7, "'title' must be str"),
    ("context", ["a"], "'context' must be str"),
    ("questions", "Q?", "'questions' must be list"),
    ("completions", "one string", "'completions' must be a list of strings"),
    ("completions", ["ok", 3], "'completions' must be a list of strings"),
])
def test_wrong_field_types(tmp_path, field, value, expect):
    records = [rec(0), rec(1)]
    records[1][field] = value
    msg = data_error(write_json(tmp_path / "t.json", records))
    assert "record 1" in msg and expect in msg


@pytest.mark.parametrize("answer", [42, None, "", "   ", ["a"]])
def test_bad_answer_values(tmp_path, answer):
    records = [rec(0)]
    records[0]["questions"][0]["answer"] = answer
    msg = data_error(write_json(tmp_path / "a.json", records))
    assert "questions[0]" in msg and "'answer'" in msg


def test_empty_answers_list_is_a_missing_answer(tmp_path):
    records = [rec(0)]
    records[0]["questions"][1] = {"question": "Q?", "answers": []}
    msg = data_error(write_json(tmp_path / "a.json", records))
    assert "questions[1]" in msg and "missing field 'answer'" in msg


def test_blank_context_is_rejected(tmp_path):
    msg = data_error(write_json(tmp_path / "c.json", [rec(0, context="  \n ")]))
    assert "record 0" in msg and "'context' is empty" in msg


@pytest.mark.parametrize("record", [["a", "list"], "a string", 5, None])
def test_record_that_is_not_an_object(tmp_path, record):
    msg = data_error(write_json(tmp_path / "r.json", [rec(0), record]))
    assert "record 1" in msg and "expected an object" in msg


def test_question_that_is_not_an_object(tmp_path):
    records = [rec(0)]
    records[0]["questions"][0] = "What?"
    msg = data_error(write_json(tmp_path / "r.json", records))
    assert "questions[0]" in msg and "expected an object" in msg


@pytest.mark.parametrize("top", [{"title": "x"}, 3, "text"])
def test_top_level_not_a_list(tmp_path, top):
    msg = data_error(write_json(tmp_path / "top.json", top))
    assert "expected a JSON list" in msg


@pytest.mark.parametrize("name,content", [("e.json", ""), ("e.json", " \n\n "), ("e.jsonl", ""),
                                          ("e.jsonl", "\n\n")])
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    msg = data_error(path)
    assert msg == f"{path}: file is empty"


def test_empty_list_holds_no_records(tmp_path):
    msg = data_error(write_json(tmp_path / "l.json", []))
    assert "no records" in msg


# ---------------------------------------------------------------------------------------------
# SQuAD layouts
# ---------------------------------------------------------------------------------------------

def official(articles) -> dict:
    return {"version": "1.1", "data": [
        {"title": t, "paragraphs": [
            {"context": ctx, "qas": [{"id": f"{t}-{k}-{j}", "question": q,
                                      "answers": [{"text": a, "answer_start": 0} for a in answers]}
                                     for j, (q, answers) in enumerate(qas)]}
            for k, (ctx, qas) in enumerate(paras)]}
        for t, paras in articles]}


def test_official_squad_layout_groups_by_paragraph(tmp_path):
    data = official([
        ("Super_Bowl_50", [("Para one.", [("Who won?", ["Denver Broncos", "Broncos"]), ("Where?", ["Santa Clara"])]),
                           ("Para two.", [("When?", ["2016", "February 7, 2016"])])]),
        ("Warsaw", [("Para three.", [("What?", ["a city"])])]),
    ])
    path = write_json(tmp_path / "dev-v1.1.json", data)
    ps = load_seal_file(path)
    assert [p.context for p in ps] == ["Para one.", "Para two.", "Para three."]
    assert [p.title for p in ps] == ["Super Bowl 50", "Super Bowl 50", "Warsaw"]  # as SEAL's squad_val.json
    assert ps[0].questions == [Question("Who won?", "Denver Broncos"), Question("Where?", "Santa Clara")]
    assert ps[1].questions == [Question("When?", "2016")]
    assert [p.uid for p in ps] == ["squad#0", "squad#1", "squad#2"]
    # the squad source reads the same file
    cfg = DataConfig(source="squad", path=str(path))
    assert [p.to_dict() for p in load_passages(cfg)] == [p.to_dict() for p in ps]


def test_official_squad_layout_bad_question_names_the_paragraph(tmp_path):
    data = official([("A", [("Ctx.", [("Q?", ["x"])])]), ("B", [("Ctx 1.", [("Q?", ["y"])]),
                                                              ("Ctx 2.", [("Q?", ["z"]), ("Q2?", ["w"])])])])
    del data["data"][1]["paragraphs"][1]["qas"][1]["answers"]
    msg = data_error(write_json(tmp_path / "o.json", data))
    assert "data[1].paragraphs[1]" in msg and "questions[1]" in msg and "'answer'" in msg
    del data["data"][1]["paragraphs"][1]["qas"][1]["question"]
    msg = data_error(write_json(tmp_path / "o.json", data))
    assert "data[1].paragraphs[1]" in msg and "questions[1]" in msg and "'question'" in msg


def test_group_squad_official_direct():
    ps = group_squad_official(official([("T_x", [("C.", [("Q?", ["a", "b"])])])]), "src")
    assert len(ps) == 1 and ps[0].title == "T x" and ps[0].questions == [Question("Q?", "a")]


def hub_row(title, context, question, answers):
    return {"id": f"{title}/{question}", "title": title, "context": context, "question": question,
            "answers": {"text": list(answers), "answer_start": [0] * len(answers)}}


def test_group_squad_rows_groups_by_title_and_context_in_first_seen_order():
    rows = [
        hub_row("Super_Bowl_50", "ctx A", "q1", ["gold 1", "alt 1"]),
        hub_row("Warsaw", "ctx B", "q2", ["gold 2"]),
        hub_row("Super_Bowl_50", "ctx A", "q3", ["gold 3", "gold 3", "x"]),
        hub_row("Other_Title", "ctx A", "q4", ["gold 4"]),  # same context, other title: its own passage
        hub_row("Super_Bowl_50", "ctx C", "q5", ["gold 5"]),  # same title, other context: its own passage
        hub_row("Warsaw", "ctx B", "q6", ["gold 6"]),
    ]
    ps = group_squad_rows(rows, source="squad-validation")
    assert [(p.title, p.context) for p in ps] == [("Super Bowl 50", "ctx A"), ("Warsaw", "ctx B"),
                                                  ("Other Title", "ctx A"), ("Super Bowl 50", "ctx C")]
    assert ps[0].questions == [Question("q1", "gold 1"), Question("q3", "gold 3")]
    assert ps[1].questions == [Question("q2", "gold 2"), Question("q6", "gold 6")]
    assert ps[2].questions == [Question("q4", "gold 4")]
    assert [p.uid for p in ps] == [f"squad-validation#{i}" for i in range(4)]
    assert sum(len(p.questions) for p in ps) == len(rows)


def test_group_squad_rows_accepts_plain_answer_lists():
    ps = group_squad_rows([{"title": "T", "context": "C", "question": "Q", "answers": ["first", "second"]}])
    assert ps[0].questions == [Question("Q", "first")]


def test_group_squad_rows_empty_answers_names_the_row():
    rows = [hub_row("T", "C", "q0", ["a"]), hub_row("T", "C", "q1", [])]
    with pytest.raises(DataError, match=r"row 1.*'answers'"):
        group_squad_rows(rows, source="squad-x")


# ---------------------------------------------------------------------------------------------
# seal_eval subset and selection
# ---------------------------------------------------------------------------------------------

def many(n: int) -> list[Passage]:
    return [Passage(title=f"T{i}", context=f"C{i}", questions=[Question("q", "a")], uid=f"f#{i}") for i in range(n)]


def reference_subset(items, n=200):
    lst = list(items)
    random.seed(42)
    random.shuffle(lst)
    return lst[:n]


def test_seal_eval_subset_matches_seed42_shuffle():
    ps = many(500)
    sub = seal_eval_subset(ps)
    assert len(sub) == 200
    assert [p.uid for p in sub] == [p.uid for p in reference_subset(ps)]
    assert [p.uid for p in sub] != [p.uid for p in ps[:200]]  # really shuffled
    assert [p.uid for p in ps] == [f"f#{i}" for i in range(500)]  # input list untouched


def test_seal_eval_subset_smaller_input_and_other_seed():
    ps = many(50)
    sub = seal_eval_subset(ps)
    assert len(sub) == 50 and sorted(p.uid for p in sub) == sorted(p.uid for p in ps)
    assert [p.uid for p in sub] == [p.uid for p in reference_subset(ps)]
    lst = list(ps)
    random.seed(7)
    random.shuffle(lst)
    assert [p.uid for p in seal_eval_subset(ps, n=10, seed=7)] == [p.uid for p in lst[:10]]


def test_seal_eval_subset_leaves_global_rng_alone():
    random.seed(123)
    expected = [random.random() for _ in range(3)]
    random.seed(123)
    seal_eval_subset(many(30))
    assert [random.random() for _ in range(3)] == expected


@pytest.fixture
def file_250(tmp_path) -> Path:
    return write_json(tmp_path / "p.json", [rec(i, n_q=1) for i in range(250)])


def test_load_passages_file_offset_limit(file_250):
    full = load_seal_file(file_250)
    got = load_passages(DataConfig(source="file", path=str(file_250), offset=10, limit=5))
    assert [p.uid for p in got] == [p.uid for p in full[10:15]] == [f"p.json#{i}" for i in range(10, 15)]
    assert len(load_passages(DataConfig(source="file", path=str(file_250)))) == 250
    assert len(load_passages(DataConfig(source="file", path=str(file_250), offset=245, limit=100))) == 5


def test_load_passages_subset_then_offset_and_limit(file_250):
    ref = reference_subset(load_seal_file(file_250))
    sub = load_passages(DataConfig(source="file", path=str(file_250), subset="seal_eval"))
    assert [p.uid for p in sub] == [p.uid for p in ref]
    part = load_passages(DataConfig(source="file", path=str(file_250), subset="seal_eval", offset=20, limit=7))
    assert [p.uid for p in part] == [p.uid for p in ref[20:27]]
    tail = load_passages(DataConfig(source="file", path=str(file_250), subset="seal_eval", offset=195))
    assert [p.uid for p in tail] == [p.uid for p in ref[195:200]]


def test_load_passages_fictional():
    got = load_passages(DataConfig(source="fictional", num_passages=6, seed=1, offset=2, limit=3))
    from seal.data.fictional import generate_passages

    assert got == generate_passages(6, seed=1)[2:5]


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one(file_250, limit):
    with pytest.raises(DataError, match=rf"data.limit must be at least 1, got {limit}"):
        load_passages(DataConfig(source="file", path=str(file_250), limit=limit))


def test_negative_offset(file_250):
    with pytest.raises(DataError, match=r"data.offset.*-3"):
        load_passages(DataConfig(source="file", path=str(file_250), offset=-3))


def test_offset_past_the_end(file_250):
    with pytest.raises(DataError, match="no passages selected"):
        load_passages(DataConfig(source="file", path=str(file_250), offset=250))


def test_unknown_source():
    with pytest.raises(DataError, match=r"data.source.*'wikipedia'"):
        load_passages(DataConfig(source="wikipedia"))


def test_unknown_subset(file_250):
    with pytest.raises(DataError, match=r"data.subset.*'seal_val'"):
        load_passages(DataConfig(source="file", path=str(file_250), subset="seal_val"))


def test_file_source_needs_a_path():
    with pytest.raises(DataError, match="data.path"):
        load_passages(DataConfig(source="file", path=None))


def test_file_source_bad_file_propagates(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path.name}:1"):
        load_passages(DataConfig(source="file", path=str(path)))


# ---------------------------------------------------------------------------------------------
# The SEAL paper's released files (../shared), when present
# ---------------------------------------------------------------------------------------------

needs_shared = pytest.mark.skipif(not (GK / "squad_val.json").is_file(),
                                  reason=f"SEAL's released data not found at {GK} (../shared is absent)")


@pytest.fixture(scope="module")
def squad_val():
    return load_seal_file(GK / "squad_val.json")


@needs_shared
def test_real_squad_val_counts(squad_val):
    assert len(squad_val) == 2067
    assert sum(len(p.questions) for p in squad_val) == 10570
    assert len({p.uid for p in squad_val}) == 2067


@needs_shared
def test_real_seal_eval_subset_counts(squad_val):
    sub = load_passages(DataConfig(source="squad", path=str(GK / "squad_val.json"), subset="seal_eval"))
    assert len(sub) == 200
    assert sum(len(p.questions) for p in sub) == 974
    assert [p.uid for p in sub] == [p.uid for p in reference_subset(squad_val)]


@needs_shared
def test_real_squad_val_round_trips_through_the_squad_layouts(squad_val):
    """Rebuilt as the hub's flat rows and as the official JSON, squad_val.json groups back to itself."""
    rows = [hub_row(p.title.replace(" ", "_"), p.context, q.question, [q.answer, "other"])
            for p in squad_val for q in p.questions]
    grouped = group_squad_rows(rows)
    assert [p.to_dict() for p in grouped] == [p.to_dict() for p in squad_val]
    articles: dict[str, list] = {}
    for p in squad_val:
        articles.setdefault(p.title.replace(" ", "_"), []).append(
            (p.context, [(q.question, [q.answer, "other"]) for q in p.questions]))
    back = group_squad_official(official(list(articles.items())), "dev")
    key = lambda d: (d["title"], d["context"])
    assert sorted(map(key, (p.to_dict() for p in back))) == sorted(map(key, (p.to_dict() for p in squad_val)))
    assert sum(len(p.questions) for p in back) == 10570


@needs_shared
@pytest.mark.parametrize("name", ["gpt4_1_val.json", "base_val.json"])
def test_real_self_edit_files_cover_the_seal_eval_subset(squad_val, name):
    path = GK / "synthetic_data" / "eval" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    ps = load_seal_file(path)
    assert len(ps) == 200
    assert all(len(p.completions) == 5 for p in ps)
    assert all(c.strip() for p in ps for c in p.completions)
    assert {p.context for p in ps} == {p.context for p in seal_eval_subset(squad_val)}
