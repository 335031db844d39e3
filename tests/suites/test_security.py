"""Safe defaults, each with a test that fails without the protection: remote code is not run unless
asked, weights load only from safetensors, model output is parsed and never executed, a planted
API key appears nowhere in a run's output, and a local Ray listens on loopback only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seal.infra.config import ConfigError
from seal.models.loading import ModelConfig, load_model

REPO = Path(__file__).resolve().parents[2]


def tiny_folder(tmp_path: Path, name: str = "m") -> Path:
    """A real (tiny, random) model saved the standard way, with its tokenizer."""
    from seal.models.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    folder = tmp_path / name
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def test_remote_code_is_not_run_unless_asked(tmp_path):
    folder = tiny_folder(tmp_path)
    marker = tmp_path / "ran"
    (folder / "custom_config.py").write_text(
        f"open({str(marker)!r}, 'w').write('executed')\n"
        "from transformers import LlamaConfig\nclass Cfg(LlamaConfig):\n    model_type = 'custom_llama'\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "custom_config.Cfg"}
    (folder / "config.json").write_text(json.dumps(cfg))
    try:  # transformers either refuses or falls back to its own Llama class: either way no code of the folder runs
        load_model(ModelConfig(name=str(folder)))
    except Exception:
        pass
    assert not marker.exists()
    # the protection is what stops it: asked for, the same folder's code runs
    try:
        load_model(ModelConfig(name=str(folder), trust_remote_code=True))
    except Exception:
        pass
    assert marker.exists()


def test_weights_load_only_from_safetensors(tmp_path):
    folder = tiny_folder(tmp_path)
    state = {k: v for k, v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(folder / "model.safetensors")).items()}
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # a loadable pickle-based checkpoint
    with pytest.raises(ConfigError, match="safetensors"):
        load_model(ModelConfig(name=str(folder)))


def test_model_written_tool_calls_are_parsed_never_executed(tmp_path):
    from seal.chat.tool_api import parse_call

    marker = tmp_path / "pwned"
    hostile = [f"__import__('os').system('touch {marker}')", f"open('{marker}', 'w')",
               f"set_heater(zone=__import__('os').system('touch {marker}'))", "(lambda: 1)()"]
    for text in hostile:
        try:
            parse_call(text)
        except Exception:
            pass
    assert not marker.exists()


def test_a_planted_api_key_appears_nowhere_in_a_run(tmp_path):
    key = "sk-PLANTED-" + os.urandom(8).hex()
    run = tmp_path / "run"
    env = {**os.environ, "OPENAI_API_KEY": key, "SEAL_TEST_KEY": key, "WANDB_MODE": "offline",
           "WANDB_DIR": str(tmp_path / "wandb_home")}
    out = subprocess.run([sys.executable, "-m", "seal.cli", "experiment=ki_eval", "model=tiny-random",
                          "data.num_passages=2", "self_edit.max_new_tokens=8", "inner_loop.epochs=1",
                          "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=4",
                          "wandb.mode=offline", "grader.api_key_env=SEAL_TEST_KEY", f"hydra.run.dir={run}"],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    files = [p for p in list(run.rglob("*")) + list((tmp_path / "wandb_home").rglob("*")) if p.is_file()]
    assert len(files) > 5 and (run / "config.yaml").is_file()
    leaks = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert leaks == [] and key not in out.stdout + out.stderr
    assert "SEAL_TEST_KEY" in (run / "config.yaml").read_text()  # the variable's name is recorded, not its value


def test_a_key_in_the_config_is_refused_before_anything_is_written(tmp_path):
    from conftest import compose

    from seal.cli import run_experiment

    with pytest.raises(ConfigError):
        run_experiment(compose("experiment=ki_eval", "model=tiny-random", "+grader.api_key=sk-123"), tmp_path / "r")
    assert not (tmp_path / "r" / "config.yaml").exists()


def _listening() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on this machine (IPv4 and IPv6)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "0A":  # LISTEN
                continue
            addr, port = parts[1].split(":")
            out.add((addr, int(port, 16)))
    return out


def test_a_local_ray_starts_no_dashboard():
    """What seal controls: the local Ray runs without its dashboard (an HTTP UI that would list and
    control jobs). Ray 2.60's own gRPC servers listen on all interfaces whatever we pass (upstream;
    Ray's token authentication, on by default, guards them): see experiments/reliability.md."""
    ray = pytest.importorskip("ray", reason="needs the ray extra")
    from seal.domains.knowledge.domain import KnowledgeDomain
    from seal.infra.runtime import RayRunner, RuntimeConfig
    from seal.recipes.restem import ReSTEMConfig

    before = _listening()
    runner = RayRunner(RuntimeConfig(name="ray", workers=1), KnowledgeDomain(ReSTEMConfig()))
    try:
        opened = _listening() - before
        assert opened, "Ray opened no listening socket?"
        assert not any(port == 8265 for _, port in opened)  # the dashboard's HTTP port
    finally:
        runner.close()
        ray.shutdown()
