"""Chat versions are PEFT adapter folders: `PeftModel.from_pretrained` on a fresh base model computes
what the chat's model computes, for a learned version, an exported chain, and an old-format store."""

from __future__ import annotations

import json

import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from safetensors.torch import save_file

from seal.chat.adapter_store import StoreError, apply_adapter
from seal.chat.peft_format import CONFIG_FILE, WEIGHTS_FILE, chain_adapter
from seal.models.tiny import tiny_model_and_tokenizer
from tests.chat.test_chat import FACT, PROBE, session

TEXT = "Who keeps the Vesk Harbour lighthouse?"


def random_update(shapes: dict[str, tuple[int, int]], r: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (o, i) in shapes.items():
        out[f"{name}.lora_A.weight"] = 0.05 * torch.randn(r, i, generator=g)
        out[f"{name}.lora_B.weight"] = 0.05 * torch.randn(o, r, generator=g)
    return out


@torch.no_grad()
def logits(model, tok) -> torch.Tensor:
    return model(input_ids=tok(TEXT, return_tensors="pt")["input_ids"]).logits


@torch.no_grad()
def peft_logits(folder) -> torch.Tensor:
    base, tok = tiny_model_and_tokenizer()  # a fresh copy of the base model
    return logits(PeftModel.from_pretrained(base.eval(), str(folder)).eval(), tok)


def test_a_learned_version_loads_with_peft_and_an_exported_chain_too(tmp_path):
    s = session(tmp_path)
    base = logits(s.model, s.tok)
    assert s.learn(FACT, probes=PROBE).accepted
    folder = s.store.root / "versions" / "v0001"
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert (folder / WEIGHTS_FILE).is_file() and config["peft_type"] == "LORA"
    assert config["base_model_name_or_path"] == "tiny-random" and config["r"] == s.cfg.inner_loop.lora_r
    assert config["lora_alpha"] / config["r"] == s.scale
    assert sorted(config["target_modules"]) == sorted(s.cfg.inner_loop.target_modules)
    learned = logits(s.model, s.tok)
    assert not torch.allclose(learned, base, atol=1e-3)
    torch.testing.assert_close(peft_logits(folder), learned, atol=1e-5, rtol=0)

    # a second version trained on top of the first: one folder holds its own update, the export the chain
    meta = {"scale": s.scale, "lora_r": 2, "lora_alpha": 2 * s.scale, "source": "constructed"}
    v2 = s.store.commit(random_update(s.shapes, 2, seed=1), meta)
    s.checkout(v2)
    chained = logits(s.model, s.tok)
    assert not torch.allclose(peft_logits(s.store.root / "versions" / v2), chained, atol=1e-3)
    out = s.export(str(tmp_path / "export"))
    exported = json.loads((tmp_path / "export" / CONFIG_FILE).read_text())
    assert exported["r"] == s.cfg.inner_loop.lora_r + 2 and exported["base_model_name_or_path"] == "tiny-random"
    torch.testing.assert_close(peft_logits(out), chained, atol=1e-5, rtol=0)
    s.export(out)  # an earlier export is overwritten
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not an empty folder or an earlier export"):
        s.export(str(tmp_path / "elsewhere"))
    s.checkout(None)
    with pytest.raises(StoreError, match="nothing to export"):
        s.export(str(tmp_path / "export2"))
    s.close()


def test_the_model_folder_is_the_base_peft_names(tmp_path):
    model, tok = tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    s = session(tmp_path, f"model.name={tmp_path / 'base'}")
    assert s.learn(FACT, probes=PROBE).accepted
    folder = s.store.root / "versions" / "v0001"
    assert json.loads((folder / CONFIG_FILE).read_text())["base_model_name_or_path"] == str(tmp_path / "base")
    with torch.no_grad():  # peft loads the base from the adapter's config
        torch.testing.assert_close(logits(AutoPeftModelForCausalLM.from_pretrained(str(folder)).eval(), s.tok),
                                   logits(s.model, s.tok), atol=1e-5, rtol=0)
    s.close()


def test_chain_adapter_sums_updates_of_different_scales_and_layers():
    shapes = {"x.q_proj": (6, 5), "x.v_proj": (4, 5)}
    first = random_update(shapes, 3, seed=2)
    second = {k: v for k, v in random_update(shapes, 2, seed=3).items() if "v_proj" not in k}  # q_proj only
    tensors, alpha = chain_adapter([(first, 2.0), (second, 0.5)])
    rank = tensors["x.q_proj.lora_A.weight"].shape[0]
    assert rank == 5 and tensors["x.v_proj.lora_A.weight"].shape[0] == 5
    for name in shapes:
        want = 2.0 * first[f"{name}.lora_B.weight"] @ first[f"{name}.lora_A.weight"]
        if f"{name}.lora_A.weight" in second:
            want += 0.5 * second[f"{name}.lora_B.weight"] @ second[f"{name}.lora_A.weight"]
        got = (alpha / rank) * tensors[f"{name}.lora_B.weight"] @ tensors[f"{name}.lora_A.weight"]
        torch.testing.assert_close(got, want)
    same, same_alpha = chain_adapter([(first, 2.0), (random_update(shapes, 3, seed=4), 2.0)])
    assert same_alpha == 2.0 * 6 and torch.equal(same["x.q_proj.lora_B.weight"][:, :3], first["x.q_proj.lora_B.weight"])


def old_format_store(root, shapes, scale: float) -> dict[str, torch.Tensor]:
    """A store as seal-chat wrote it before the PEFT format: adapter.safetensors, layer names, no config."""
    tensors = random_update(shapes, 2, seed=5)
    folder = root / "versions" / "v0001"
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter.safetensors"))
    (folder / "meta.json").write_text(json.dumps({"version": "v0001", "parent": None, "scale": scale, "lora_r": 2,
                                                  "source": "old", "content": "old content"}))
    (root / "HEAD").write_text("v0001")
    (root / "store.json").write_text(json.dumps({"model": "tiny-random"}))
    return tensors


def test_an_old_format_store_still_loads_and_exports(tmp_path):
    model, tok = tiny_model_and_tokenizer()
    model.eval()
    shapes = {n: tuple(m.weight.shape) for n, m in model.named_modules() if n.endswith(("q_proj", "v_proj"))}
    tensors = old_format_store(tmp_path / "store", shapes, scale=2.0)
    apply_adapter(model, tensors, 2.0)
    want = logits(model, tok)
    s = session(tmp_path)  # all target modules, r=32: the old version's q_proj and v_proj are a subset
    assert s.version == "v0001" and s.scale == 2.0
    torch.testing.assert_close(logits(s.model, s.tok), want)
    assert s.learn(FACT, probes=PROBE).accepted  # a new version on top of an old one is written as PEFT
    # the export holds both: zeros where the old version had no update (k_proj, o_proj, the MLP)
    assert (s.store.root / "versions" / "v0002" / CONFIG_FILE).is_file()
    torch.testing.assert_close(peft_logits(s.export(str(tmp_path / "export"))), logits(s.model, s.tok),
                               atol=1e-5, rtol=0)
    s.close()
