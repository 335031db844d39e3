"""The adapter store: versions, HEAD, undo, atomic commits, and no writes outside its folder."""

from __future__ import annotations

import json
import os

import pytest
import torch

from seal.chat.adapter_store import AdapterStore, StoreError, apply_adapter
from seal.chat.peft_format import CONFIG_FILE, WEIGHTS_FILE
from seal.inner_loop.multi_lora import MultiLoRA, target_layers


def _delta(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"layer.lora_A.weight": torch.randn(2, 4, generator=g),
            "layer.lora_B.weight": torch.randn(3, 2, generator=g)}


def test_commit_head_chain_undo(tmp_path):
    store = AdapterStore(tmp_path / "s", "m")
    assert store.head() is None and store.chain(None) == []
    v1 = store.commit(_delta(1), {"source": "a", "scale": 1.0})
    v2 = store.commit(_delta(2), {"source": "b", "scale": 1.0})
    assert (v1, v2) == ("v0001", "v0002") and store.head() == v2
    assert store.chain(v2) == [v1, v2] and store.meta(v2)["parent"] == v1
    assert torch.equal(store.tensors(v1)["layer.lora_A.weight"], _delta(1)["layer.lora_A.weight"])
    assert store.undo() == (v2, v1) and store.head() == v1
    v3 = store.commit(_delta(3), {"source": "c", "scale": 1.0})  # a new commit after undo branches from v1
    assert store.chain(v3) == [v1, v3] and store.versions() == [v1, v2, v3]
    again = AdapterStore(tmp_path / "s", "m")  # a new session sees the same HEAD
    assert again.head() == v3
    store.undo(), store.undo()
    with pytest.raises(StoreError, match="nothing to undo"):
        store.undo()
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".tmp-")]


def test_refuses_another_models_store(tmp_path):
    AdapterStore(tmp_path / "s", "model-a")
    with pytest.raises(StoreError, match="model-a"):
        AdapterStore(tmp_path / "s", "model-b")


@pytest.mark.parametrize("name", ["../../evil", "v0001/../../x", "/etc/passwd", "v1", "head"])
def test_version_names_cannot_leave_the_store(tmp_path, name):
    store = AdapterStore(tmp_path / "s", "m")
    with pytest.raises(StoreError):
        store.set_head(name)
    (tmp_path / "s" / "HEAD").write_text(name)  # a hand-edited HEAD is checked as well
    with pytest.raises(StoreError):
        store.head()


def test_planted_symlink_is_refused(tmp_path):
    store = AdapterStore(tmp_path / "s", "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "s" / "versions" / "v0001")
    with pytest.raises(StoreError, match="outside the store"):
        store.commit(_delta(1), {"source": "x", "scale": 1.0})
    assert list(outside.iterdir()) == []
    os.symlink(outside / "h", tmp_path / "s" / "HEAD")
    with pytest.raises(StoreError, match="outside the store"):
        store.set_head(None)
    assert not (outside / "h").exists()


def test_apply_adapter_equals_multilora_merge(tiny):
    model, _ = tiny
    lora = MultiLoRA(model, ["q_proj", "v_proj"], r=4, alpha=8, slots=1)
    lora.reset(0, seed=1)
    with torch.no_grad():
        for b in lora.B:
            b.normal_()
    state = lora.slot_state(0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora.merge(0)
    merged = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])
    apply_adapter(model, state, scale=2.0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, merged[n])
    assert any(not torch.equal(merged[n], before[n]) for n in before)
    apply_adapter(model, state, scale=2.0, sign=-1.0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, before[n], atol=1e-5, rtol=0)


def test_the_load_check_accepts_what_seal_writes(tiny, tmp_path):
    model, _ = tiny
    shapes = {n: tuple(m.weight.shape) for n, m in target_layers(model, ["q_proj", "v_proj"])}
    lora = MultiLoRA(model, ["q_proj", "v_proj"], r=4, alpha=8, slots=1)
    lora.reset(0, seed=1)
    store = AdapterStore(tmp_path / "s", "m")
    v = store.commit(lora.slot_state(0), {"scale": lora.scale, "lora_r": 4, "lora_alpha": 8})
    tensors, scale = store.adapter(v, shapes, default_scale=1.0)
    assert scale == 2.0 and tensors.keys() == lora.slot_state(0).keys()
    with pytest.raises(StoreError, match="not one of the model's target layers"):
        store.adapter(v, {n: s for n, s in shapes.items() if "v_proj" not in n}, default_scale=1.0)


def test_a_peft_folder_that_seal_did_not_write_is_refused(tiny, tmp_path):
    model, _ = tiny
    shapes = {n: tuple(m.weight.shape) for n, m in target_layers(model, ["q_proj", "v_proj"])}
    lora = MultiLoRA(model, ["q_proj", "v_proj"], r=4, alpha=8, slots=1)
    lora.reset(0, seed=1)
    store = AdapterStore(tmp_path / "s", "m")
    v = store.commit(lora.slot_state(0), {"scale": lora.scale, "lora_r": 4, "lora_alpha": 8})
    config_path = store.root / "versions" / v / CONFIG_FILE
    config = json.loads(config_path.read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["base_model_name_or_path"] == "m"
    for field, value, match in [("use_dora", True, "field 'use_dora' is True"), ("r", 8, "has r=8"),
                                ("lora_alpha", 16, "lora_alpha=16"), ("r", "4", "field 'r' is '4'"),
                                ("alpha_pattern", {"q_proj": 2}, "alpha_pattern")]:
        config_path.write_text(json.dumps({**config, field: value}))
        with pytest.raises(StoreError, match=f"version {v}: .*{match}"):
            store.adapter(v, shapes, default_scale=1.0)
    config_path.write_text(json.dumps(config))
    from safetensors.torch import save_file
    save_file(lora.slot_state(0), str(store.root / "versions" / v / WEIGHTS_FILE))  # no PEFT prefix
    with pytest.raises(StoreError, match="lacks PEFT's prefix 'base_model.model.'"):
        store.adapter(v, shapes, default_scale=1.0)
    config_path.unlink()
    with pytest.raises(StoreError, match=f"version {v}: no adapter_config.json"):
        store.adapter(v, shapes, default_scale=1.0)
