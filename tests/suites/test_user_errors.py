"""User errors are messages, not tracebacks: broken data files, broken model folders, invisible answers,
and seal-chat's files (what `/learn-file` reads, what the adapter store holds). Each test fails on the
code before these checks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, compose
from fake_judge import FakeJudge

from seal.chat.adapter_store import AdapterStore, StoreError, check_adapter
from seal.chat.cli import load_config
from seal.chat.files import read_text_file
from seal.chat.moderation import LearnRefused
from seal.chat.session import Session
from seal.cli import run_experiment
from seal.data.sources import DataConfig, DataError, is_blank, load_passages, load_seal_file
from seal.domains.arc.data import ARCDataConfig, load_tasks
from seal.eval.graders import GradeItem, GraderConfig, JudgeGrader, MatchGrader, OpenAIGrader, is_empty_answer
from seal.infra.config import ConfigError
from seal.models.loading import ModelConfig, load_model

ZERO_WIDTH = ["\u200b", "\u200c\u200d", "\u2060", "\ufeff", " \u200b\n\t", "\u00ad\u200e"]


def rec(i: int, n_q: int = 2) -> dict:
    return {"title": f"Title {i}", "context": f"Context number {i}.",
            "questions": [{"question": f"Q{i}.{j}?", "answer": f"A{i}.{j}"} for j in range(n_q)]}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def seal_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "seal.cli", "experiment=ki_eval", "model=tiny-random",
                           "wandb.mode=disabled", f"hydra.run.dir={tmp_path / 'run'}", *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def assert_one_line_error(res: subprocess.CompletedProcess, *parts: str) -> None:
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("seal: error: "), res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr
    for part in parts:
        assert part in lines[0], lines[0]


# --------------------------------------------------------------------------------------------- data files

def test_deeply_nested_json_is_a_data_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    for name in ("deep.json", "deep.jsonl"):
        path = write(tmp_path / name, deep + "\n")
        with pytest.raises(DataError, match="nested too deeply") as e:
            load_seal_file(path)
        assert str(path) in str(e.value)
    arc = write(tmp_path / "challenges.json", '{"t": ' + deep + "}")
    with pytest.raises(DataError, match="nested too deeply") as e:
        load_tasks(ARCDataConfig(challenges=str(arc)))
    assert str(arc) in str(e.value)


@pytest.mark.parametrize("field,where", [("title", "record 1"), ("context", "record 1"),
                                         ("question", "record 1, questions[0]"), ("answer", "record 1, questions[1]"),
                                         ("completions[1]", "record 1")])
def test_lone_surrogate_names_file_record_and_field(tmp_path, field, where):
    records = [rec(0), {**rec(1), "completions": ["fine", "fine"]}]
    broken = "Velmora \ud800 harbour"
    if field in ("title", "context"):
        records[1][field] = broken
    elif field == "question":
        records[1]["questions"][0]["question"] = broken
    elif field == "answer":
        records[1]["questions"][1]["answer"] = broken
    else:
        records[1]["completions"][1] = broken
    path = write(tmp_path / "s.json", json.dumps(records))  # written as the escape `\ud800`
    assert "\\ud800" in path.read_text()
    with pytest.raises(DataError) as e:
        load_seal_file(path)
    msg = str(e.value)
    assert f"{path}, {where}: field '{field}'" in msg and "surrogate" in msg and "U+D800" in msg


def test_a_paired_surrogate_escape_is_fine(tmp_path):
    path = write(tmp_path / "s.json", json.dumps([{**rec(0), "context": "A whale \U0001f433 swims."}]))
    assert "\\ud83d\\udc33" in path.read_text()
    assert load_seal_file(path)[0].context == "A whale \U0001f433 swims."


def test_duplicate_passages_warn_and_count_once(tmp_path):
    path = write(tmp_path / "d.json", json.dumps([rec(0), rec(1), rec(0), rec(1)]))
    with pytest.warns(UserWarning, match=r"2 duplicate passage\(s\).*record 2 repeats record 0; record 3 repeats "
                                         r"record 1"):
        passages = load_seal_file(path)
    assert [p.uid for p in passages] == ["d.json#0", "d.json#1"]
    fast = ["model=tiny-random", "wandb.mode=disabled", "qa_eval.max_new_tokens=4", "conditions=[base]"]
    with pytest.warns(UserWarning, match="duplicate"):
        results = run_experiment(compose("experiment=ki_eval", *fast, f"data.path={path}"), tmp_path / "run")
    assert results["n_passages"] == 2 and results["conditions"]["base"]["n_questions"] == 4


def test_a_passage_without_questions_is_refused_by_name(tmp_path):
    path = write(tmp_path / "q.json", json.dumps([rec(0), rec(1, n_q=0), rec(2)]))
    assert [len(p.questions) for p in load_seal_file(path)] == [2, 0, 2]  # a completions file needs none
    with pytest.raises(DataError, match=r"passage q.json#1 \('Title 1'\) has no questions: nothing to score"):
        load_passages(DataConfig(path=str(path)))
    assert len(load_passages(DataConfig(path=str(path), limit=1))) == 1  # outside the selection it does no harm


@pytest.mark.parametrize("text", ["\u200b", "\u200b\u200d"])
def test_an_invisible_gold_answer_is_refused(tmp_path, text):
    bad = rec(0)
    bad["questions"][1]["answer"] = text
    with pytest.raises(DataError, match=r"questions\[1\]: field 'answer' must be a non-empty string"):
        load_seal_file(write(tmp_path / "z.json", json.dumps([bad])))


def test_bad_data_files_through_the_cli(tmp_path):
    deep = write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000)
    assert_one_line_error(seal_cli(tmp_path / "a", f"data.path={deep}"), str(deep), "nested too deeply")
    lone = write(tmp_path / "lone.jsonl", json.dumps({**rec(0), "context": "x \udfff y"}) + "\n")
    assert_one_line_error(seal_cli(tmp_path / "b", f"data.path={lone}"), f"{lone}:1", "'context'", "surrogate")


# --------------------------------------------------------------------------------------------- model folders

@pytest.fixture
def folder(tmp_path) -> Path:
    from seal.models.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    out = tmp_path / "m"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def refused(name, *parts: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_model(ModelConfig(name=str(name), device="cpu"))
    msg = str(e.value)
    assert msg.startswith(f"model.name={name}: ") and "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


def test_missing_or_empty_model_folder(tmp_path):
    refused(tmp_path / "nope", "no such folder")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "empty")
    write(tmp_path / "afile", "x")
    refused(tmp_path / "afile", "not a model folder")


def test_model_folder_without_or_with_a_broken_config(folder):
    text = (folder / "config.json").read_text()
    (folder / "config.json").unlink()
    refused(folder, "no config.json")
    write(folder / "config.json", text[: len(text) // 2])
    refused(folder, "config.json is not valid JSON")


@pytest.mark.parametrize("cut", ["empty", "header", "half", "tail"])
def test_truncated_safetensors(folder, cut):
    f = folder / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes({"empty": b"", "header": data[:5], "half": data[: len(data) // 2], "tail": data[:-16]}[cut])
    refused(folder, "model.safetensors is corrupt or truncated")


def test_weights_that_do_not_fit_the_config(folder):
    cfg = json.loads((folder / "config.json").read_text())
    write(folder / "config.json", json.dumps({**cfg, "num_hidden_layers": cfg["num_hidden_layers"] + 1}))
    refused(folder, "do not match config.json", "missing", f"model.layers.{cfg['num_hidden_layers']}.")
    write(folder / "config.json", json.dumps({**cfg, "intermediate_size": cfg["intermediate_size"] * 2}))
    refused(folder, "do not match config.json", "wrong shape", "mlp")


def test_a_broken_model_folder_through_the_cli(tmp_path, folder):
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    res = seal_cli(tmp_path, f"model.name={folder}")
    assert_one_line_error(res, f"model.name={folder}", "model.safetensors is corrupt or truncated")


# --------------------------------------------------------------------------------------------- graders

@pytest.mark.parametrize("text", ZERO_WIDTH + ["", "  "])
def test_invisible_answers_are_empty(text):
    assert is_empty_answer(text) and is_blank(text)


@pytest.mark.parametrize("text", ["a\u200b", "\u200b0", "Paris"])
def test_visible_answers_are_not_empty(text):
    assert not is_empty_answer(text)


def test_match_grader_zero_width_answer_is_wrong():
    grades = MatchGrader().grade([GradeItem("Q", t, t) for t in ZERO_WIDTH[:4]] + [GradeItem("Q", "Paris", "Paris")])
    assert [g.correct for g in grades] == [False] * 4 + [True]
    assert [g.f1 for g in grades[:4]] == [0.0] * 4


def test_judge_grader_zero_width_answer_is_wrong_without_running_the_judge(tiny):
    model, tok = tiny
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    grader = JudgeGrader(model, tok, GraderConfig().prompt, chat=True)
    grades = grader.grade([GradeItem("Q", "gold", t) for t in ZERO_WIDTH])
    assert not any(g.correct for g in grades) and calls == []


def test_openai_grader_zero_width_answer_is_wrong_without_a_request(tmp_path, monkeypatch):
    monkeypatch.setenv("SEAL_TEST_ZW_KEY", "sk-test-zero-width")
    with FakeJudge() as endpoint:
        cfg = GraderConfig(kind="openai", base_url=endpoint.url, model="judge", api_key_env="SEAL_TEST_ZW_KEY",
                           timeout_s=5.0, max_retries=0, cache_dir=str(tmp_path / "judge"))
        grader = OpenAIGrader(cfg)
        grades = grader.grade([GradeItem("Q", "gold", t) for t in ZERO_WIDTH] + [GradeItem("Q", "gold", "gold")])
        grader.close()
    assert [g.correct for g in grades] == [False] * len(ZERO_WIDTH) + [True]
    assert sum(endpoint.asked.values()) == 1


# --------------------------------------------------------------------------------------------- seal-chat files

def test_learn_file_refuses_devices_fifos_and_folders_without_reading(tmp_path):
    start = time.time()
    with pytest.raises(LearnRefused, match="character device, not a regular file"):
        read_text_file("/dev/zero", 20_000)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(LearnRefused, match="FIFO"):  # opening it must not wait for a writer
        read_text_file(fifo, 20_000)
    with pytest.raises(LearnRefused, match="a folder"):
        read_text_file(tmp_path, 20_000)
    with pytest.raises(LearnRefused, match="cannot read"):
        read_text_file(tmp_path / "missing.txt", 20_000)
    assert time.time() - start < 5


def test_learn_file_reads_at_most_the_limit(tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:
        f.truncate(64 << 30)  # a sparse 64 GiB file: reading it whole would never end
    with pytest.raises(LearnRefused, match="larger than 400 bytes"):
        read_text_file(huge, 100)
    write(tmp_path / "ok.txt", "é" * 100)  # 200 bytes, 100 characters: within the limit
    assert read_text_file(tmp_path / "ok.txt", 100) == "é" * 100


FACT = "The lighthouse keeper of Vesk Harbour is named Orrin Tallow and he paints the tower green."
CHAT = ["model=tiny-random", "chat.background=false", "chat.self_edit=false", "inner_loop.lr=1e-2",
        "inner_loop.epochs=4", "chat.probes=1", "chat.gate.min_gain=0.05", "chat.gate.max_ppl_increase=10",
        "chat.gate.max_retention_drop=10", "chat.gate.max_chat_drop=10", "chat.gate.general_docs=2",
        "chat.max_new_tokens=8"]


def seal_chat(store: Path, lines: list[str], *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "seal.chat.cli", *CHAT, f"chat.store={store}", *overrides],
                          input="".join(line + "\n" for line in lines), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_seal_chat_learn_file_refusals_and_the_stored_text_notice(tmp_path):
    private = write(tmp_path / "secret.txt", FACT)
    os.chmod(private, 0o600)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    store = tmp_path / "store"
    res = seal_chat(store, ["/learn-file /dev/zero", f"/learn-file {fifo}", f"/learn-file {tmp_path}",
                            "/probe Who keeps the Vesk Harbour lighthouse? => Orrin Tallow", f"/learn-file {private}",
                            f"/learn-file {private}", "/history", "/quit"])
    out = res.stdout
    assert res.returncode == 0 and "Traceback" not in out + res.stderr, res.stderr[-3000:]
    assert "[refused] not learned: /dev/zero is a character device, not a regular file" in out
    assert f"[refused] not learned: {fifo} is a FIFO" in out and f"{tmp_path} is a folder" in out
    assert out.count("[notice] learned text is kept in full, as plain text") == 1
    assert f"{store}/versions/<version>/meta.json" in out
    assert "[learned] committed v0001" in out
    version = store / "versions" / "v0001"
    assert json.loads((version / "meta.json").read_text())["content"] == FACT
    assert stat.S_IMODE(version.stat().st_mode) == 0o700
    assert stat.S_IMODE((version / "meta.json").stat().st_mode) == 0o600


# --------------------------------------------------------------------------------------------- adapter store

def tiny_shapes() -> dict[str, tuple[int, int]]:
    from seal.inner_loop.multi_lora import target_layers
    from seal.models.tiny import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer()
    return {n: tuple(m.weight.shape) for n, m in target_layers(model, ["q_proj", "v_proj"])}


def adapter_for(shapes: dict[str, tuple[int, int]], r: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (o, i) in shapes.items():
        out[f"{name}.lora_A.weight"] = 0.01 * torch.randn(r, i, generator=g)
        out[f"{name}.lora_B.weight"] = 0.01 * torch.randn(o, r, generator=g)
    return out


def edit_meta(store: AdapterStore, version: str, **fields) -> None:
    path = store.root / "versions" / version / "meta.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_adapter_checked_on_load(tmp_path):
    shapes = tiny_shapes()
    store = AdapterStore(tmp_path / "s", "tiny-random")
    v = store.commit(adapter_for(shapes), {"scale": 2.0, "lora_r": 2, "lora_alpha": 4})
    tensors, scale = store.adapter(v, shapes, 2.0)
    assert scale == 2.0 and len(tensors) == 2 * len(shapes)
    for bad, match in [(1e6, "field 'scale' is 1000000.0"), (float("nan"), "field 'scale' is nan"), (-2.0, "'scale'"),
                       ("2", "'scale'"), (3.0, "not lora_alpha / lora_r")]:
        edit_meta(store, v, scale=bad)
        with pytest.raises(StoreError, match=match) as e:
            store.adapter(v, shapes, 2.0)
        assert "version v0001" in str(e.value)
    edit_meta(store, v, scale=2.0, lora_r=8)
    with pytest.raises(StoreError, match="'lora_r' is 8 but the tensors have rank 2"):
        store.adapter(v, shapes, 2.0)


def test_adapter_with_bad_tensors_is_refused():
    shapes = tiny_shapes()
    name = next(iter(shapes))
    where = "adapter store s: version v0007"
    nan = adapter_for(shapes)
    nan[f"{name}.lora_B.weight"][0, 0] = float("nan")
    with pytest.raises(StoreError, match=f"{where}: tensor '{name}.lora_B.weight' holds non-finite values"):
        check_adapter(nan, 2.0, shapes, where)
    wrong = adapter_for(shapes)
    wrong[f"{name}.lora_A.weight"] = torch.zeros(2, 3)
    with pytest.raises(StoreError, match=f"layer '{name}'.*do not fit its weight"):
        check_adapter(wrong, 2.0, shapes, where)
    foreign = {**adapter_for(shapes), "model.layers.0.mlp.up_proj.lora_A.weight": torch.zeros(2, 64)}
    with pytest.raises(StoreError, match="not one of the model's target layers"):
        check_adapter(foreign, 2.0, shapes, where)
    half = adapter_for(shapes)
    del half[f"{name}.lora_B.weight"]
    with pytest.raises(StoreError, match="without its partner"):
        check_adapter(half, 2.0, shapes, where)


def test_corrupt_store_files_are_named(tmp_path):
    shapes = tiny_shapes()
    store = AdapterStore(tmp_path / "s", "tiny-random")
    v = store.commit(adapter_for(shapes), {"scale": 2.0})
    folder = store.root / "versions" / v
    (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(StoreError, match="versions/v0001/adapter_model.safetensors is unreadable"):
        store.adapter(v, shapes, 2.0)
    (folder / "meta.json").write_text('{"scale": 2.0, "parent": nu')
    with pytest.raises(StoreError, match="versions/v0001/meta.json is corrupt"):
        store.chain(v)
    (store.root / "HEAD").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(StoreError, match="HEAD is unreadable"):
        store.head()
    (store.root / "store.json").write_text("[1, 2")
    with pytest.raises(StoreError, match="store.json is corrupt"):
        AdapterStore(tmp_path / "s", "tiny-random")


def test_a_tampered_version_is_refused_and_changes_nothing(tmp_path):
    cfg = load_config([*CHAT, f"chat.store={tmp_path / 'store'}"])
    s = Session(cfg)
    v = s.store.commit(adapter_for(s.shapes), {"scale": s.scale})
    s.checkout(v)
    before = {n: p.detach().clone() for n, p in s.model.named_parameters()}
    s.checkout(None)
    edit_meta(s.store, v, scale=500.0)
    with pytest.raises(StoreError, match="version v0001: field 'scale' is 500.0"):
        s.checkout(v)
    assert s.store.head() is None and s.version is None  # HEAD did not move, the base weights stay
    s.store.set_head(v)
    with pytest.raises(StoreError, match="field 'scale' is 500.0"):
        Session(cfg)  # a new session refuses to start on it
    edit_meta(s.store, v, scale=s.scale)
    assert all(torch.equal(p, before[n]) for n, p in Session(cfg).model.named_parameters())
    s.close()


def test_seal_chat_names_a_corrupt_store_file(tmp_path):
    store = AdapterStore(tmp_path / "store", "tiny-random")
    v = store.commit(adapter_for(tiny_shapes()), {"scale": 2.0})
    (store.root / "versions" / v / "meta.json").write_text("{not json")
    res = seal_chat(tmp_path / "store", ["/quit"])
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr, res.stderr[-3000:]
    assert f"seal-chat: error: adapter store {store.root}: versions/v0001/meta.json is corrupt" in res.stderr


@pytest.mark.parametrize("override,key", [("inner_loop.epochs=-1", "inner_loop.epochs"),
                                          ("chat.max_new_tokens=0", "chat.max_new_tokens"),
                                          ("inner_loop.lr=nan", "inner_loop.lr"), ("chat.nope=1", "nope")])
def test_seal_chat_refuses_out_of_range_or_unknown_settings_in_one_line(tmp_path, capsys, override, key):
    from seal.chat.cli import main

    code = main(["model=tiny-random", f"chat.store={tmp_path / 'store'}", override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("seal-chat: error:") and key in err[0]
    assert not (tmp_path / "store").exists()
