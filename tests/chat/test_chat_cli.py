"""`seal-chat` as a command: a config typo is one line and exit status 2, at a terminal lines are edited
and recalled (readline) across sessions, a scripted session keeps no history, `/export` writes a PEFT
adapter folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from seal.chat.adapter_store import AdapterStore
from seal.chat.line_editing import HISTORY_FILE, enable_history
from seal.inner_loop.multi_lora import target_layers
from seal.inner_loop.trainer import InnerLoopConfig
from seal.models.tiny import tiny_model_and_tokenizer
from tests.chat.terminal import Terminal

TINY = ["model=tiny-random", "chat.background=false", "chat.self_edit=false", "chat.gate.general_docs=2",
        "chat.max_new_tokens=8"]


def seal_chat(*args: str, stdin: str = "/quit\n", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seal.chat.cli", *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", **env}, timeout=300,
                          check=False)


@pytest.mark.parametrize("typo,key", [("chat.lrr=1", "chat.lrr"), ("chat.scheduler=linnear", "chat.scheduler"),
                                      ("chat.max_new_tokens=many", "chat.max_new_tokens")])
def test_a_config_typo_is_one_line_and_exit_2(tmp_path, typo, key):
    res = seal_chat(*TINY, f"chat.store={tmp_path / 'store'}", typo)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("seal-chat: error:") and key in lines[0] and "Traceback" not in res.stdout
    assert not (tmp_path / "store").exists()  # refused before anything is written


@pytest.mark.parametrize("setting,named", [("chat.replay_sources=[{tmp}/none.txt]", "none.txt: no such file"),
                                           ("inner_loop.target_modules=[qq_proj]", "inner_loop.target_modules"),
                                           ("chat.store={tmp}/a_file/store", "cannot create it"),
                                           ("inner_loop.scheduler_kwargs={{num_cycles:2}}", "chat.scheduler=infinite"),
                                           ("chat.scheduler=cosine_with_restarts inner_loop.scheduler_kwargs.bogus=1",
                                            "chat.scheduler=cosine_with_restarts")])
def test_a_setting_that_fails_when_the_session_starts_is_one_line(tmp_path, capsys, setting, named):
    from seal.chat.cli import main

    (tmp_path / "a_file").write_text("not a folder")
    code = main([*TINY, f"chat.store={tmp_path / 'store'}", *setting.format(tmp=tmp_path).split(" ")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("seal-chat: error:") and named in err[0], err


def test_hydra_full_error_shows_the_trace(tmp_path):
    res = seal_chat(*TINY, f"chat.store={tmp_path / 'store'}", "chat.lrr=1", HYDRA_FULL_ERROR="1")
    assert res.returncode != 0 and "Traceback" in res.stderr and "chat.lrr" in res.stderr


def test_history_is_bounded_and_owner_only(tmp_path):
    readline = pytest.importorskip("readline")
    path = tmp_path / HISTORY_FILE
    readline.clear_history()
    save = enable_history(path, length=3)
    for line in ["/status", "/learn a", "/learn b", "/learn c", "hello"]:
        readline.add_history(line)
    save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [line for line in path.read_text().splitlines() if not line.startswith("_HiStOrY")][-3:] == \
        ["/learn b", "/learn c", "hello"] and "/status" not in path.read_text()
    readline.clear_history()
    enable_history(path, length=3)  # a new session reads it back
    assert [readline.get_history_item(i) for i in range(1, readline.get_current_history_length() + 1)] == \
        ["/learn b", "/learn c", "hello"]
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    assert enable_history(tmp_path / "link") is None  # a planted symlink is never written through
    readline.clear_history()


def test_lines_are_recalled_at_a_terminal_and_across_sessions(tmp_path):
    pytest.importorskip("readline")
    store = tmp_path / "store"
    t = Terminal(*TINY, f"chat.store={store}")
    t.expect(r"seal-chat .* version base")
    t.expect(r"you> ")
    t.send("/status")
    t.expect(r"model tiny-random")
    t.expect(r"you> ")
    t.send("\x1b[A")  # the up arrow recalls /status
    t.expect(r"model tiny-random", timeout=120)
    t.quit()
    history = store / HISTORY_FILE
    assert stat.S_IMODE(history.stat().st_mode) == 0o600 and "/status" in history.read_text()

    t = Terminal(*TINY, f"chat.store={store}")
    t.expect(r"you> ")
    t.send("\x1b[A\x1b[A")  # the last line was /quit; the one before it, from the last session, /status
    t.expect(r"model tiny-random", timeout=120)
    t.quit()


def test_export_writes_a_peft_folder_and_piped_input_keeps_no_history(tmp_path):
    model, _ = tiny_model_and_tokenizer()
    shapes = {n: tuple(m.weight.shape) for n, m in target_layers(model, InnerLoopConfig().target_modules)}
    store = AdapterStore(tmp_path / "store", "tiny-random")
    g = torch.Generator().manual_seed(0)
    update = {k: 0.01 * torch.randn(2, i, generator=g) if part == "A" else 0.01 * torch.randn(o, 2, generator=g)
              for name, (o, i) in shapes.items() for part, k in (("A", f"{name}.lora_A.weight"),
                                                                  ("B", f"{name}.lora_B.weight"))}
    store.commit(update, {"scale": 2.0, "lora_r": 2, "lora_alpha": 4})
    out = tmp_path / "exported"
    res = seal_chat(*TINY, f"chat.store={store.root}", stdin=f"/status\n/export {out}\n/quit\n")
    assert res.returncode == 0 and "version v0001" in res.stdout, res.stderr[-2000:]
    assert f"[export] v0001 -> {out}: a PEFT adapter of rank 2" in res.stdout
    assert json.loads((out / "adapter_config.json").read_text())["lora_alpha"] == 4
    assert not (store.root / HISTORY_FILE).exists()  # a scripted session keeps no history
