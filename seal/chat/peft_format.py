"""Chat adapter versions as PEFT adapter folders, so that peft and vLLM load what a chat taught.

A version folder holds `adapter_config.json` (written by peft's own `LoraConfig`) and
`adapter_model.safetensors` with the key names `PeftModel.save_pretrained` writes
(`base_model.model.<layer>.lora_A.weight`). seal trains its adapters with its own batched LoRA
(`seal.inner_loop.multi_lora`), which computes W x + (alpha / r) B A x on every linear layer whose last
name part is a target: the same function as a peft LoRA with the same r, lora_alpha and
target_modules (peft matches a list of target names by that last name part as well), no rsLoRA, no
DoRA, no bias.

A chat version is one update trained on top of its parent with the parent merged, so the model of a
version is the base plus every update of its chain. A first version's folder is that model as it
stands; for a longer chain, `chain_adapter` writes the updates side by side as one adapter of the
summed rank (B @ A of the concatenation is the sum of the updates), which is exact.

Stores written before this format keep `adapter.safetensors` with the layer names alone (no
prefix, no config; the scale in meta.json): `read_adapter` reads both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from seal.inner_loop.multi_lora import layer_index

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
LEGACY_WEIGHTS_FILE = "adapter.safetensors"  # stores written before the PEFT format
PREFIX = "base_model.model."  # what PeftModel puts before the base model's module names
LORA_PARTS = (".lora_A.weight", ".lora_B.weight")
# adapter_config.json fields that change the function a LoRA computes; seal writes these values only
PLAIN_LORA = {"peft_type": "LORA", "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "bias": "none"}


class AdapterFormatError(ValueError):
    """A version folder that is not a PEFT LoRA seal could have written; the message names the file and field."""


def lora_config(tensors: dict[str, torch.Tensor], lora_alpha: float, base_model: str):
    """peft's `LoraConfig` for `tensors` (layer names without the prefix): r from the tensors, the
    target modules the last name parts of their layers, in module order."""
    from peft import LoraConfig

    layers = [k[: -len(LORA_PARTS[0])] for k in tensors if k.endswith(LORA_PARTS[0])]
    ranks = sorted({tensors[f"{name}{LORA_PARTS[0]}"].shape[0] for name in layers})
    if len(ranks) != 1:
        raise AdapterFormatError(f"an adapter has one rank for all its layers; these tensors have ranks {ranks}")
    targets = list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in layers))
    alpha = int(lora_alpha) if float(lora_alpha).is_integer() else float(lora_alpha)
    # the decoder layers the tensors cover, so that peft adds LoRA to those only (an adapter trained with
    # inner_loop.layers_to_transform); every layer's index listed for an adapter on all of them
    indices = [layer_index(name) for name in layers]
    band = sorted(set(indices)) if indices and None not in indices else None
    return LoraConfig(r=ranks[0], lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, bias="none",
                      layers_to_transform=band, task_type="CAUSAL_LM", base_model_name_or_path=base_model,
                      inference_mode=True)


def write_adapter(folder: Path, tensors: dict[str, torch.Tensor], lora_alpha: float, base_model: str) -> None:
    """`folder` as a PEFT adapter folder: `tensors` (layer name -> LoRA weight, as `MultiLoRA.slot_state`
    gives them) under PEFT's key names, and their `adapter_config.json`."""
    from safetensors.torch import save_file

    lora_config(tensors, lora_alpha, base_model).save_pretrained(str(folder))
    save_file({PREFIX + k: v.detach().to(torch.float32).contiguous().cpu() for k, v in tensors.items()},
              str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


def read_adapter(folder: Path, load) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(layer name -> tensor, adapter_config.json or None for the old format) of a version folder.
    `load(path)` reads a safetensors file (the store's, which names the file when it is corrupt)."""
    if not (folder / WEIGHTS_FILE).is_file() and (folder / LEGACY_WEIGHTS_FILE).is_file():
        return load(folder / LEGACY_WEIGHTS_FILE), None
    config = _read_config(folder / CONFIG_FILE)
    tensors = {}
    for key, t in load(folder / WEIGHTS_FILE).items():
        if not key.startswith(PREFIX):
            raise AdapterFormatError(f"{WEIGHTS_FILE}: tensor '{key}' lacks PEFT's prefix '{PREFIX}'")
        tensors[key[len(PREFIX):]] = t
    return tensors, config


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterFormatError(f"no {path.name} (nor {LEGACY_WEIGHTS_FILE} of the old format)") from None
    except (OSError, ValueError) as e:
        raise AdapterFormatError(f"{path.name} is unreadable or not JSON ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{path.name} is not a JSON object")
    for field, value in PLAIN_LORA.items():
        if config.get(field, value) != value:
            raise AdapterFormatError(f"{path.name}: field '{field}' is {config[field]!r}; seal writes {value!r}")
    for field in ("r", "lora_alpha"):
        value = config.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise AdapterFormatError(f"{path.name}: field '{field}' is {value!r}, not a positive number")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterFormatError(f"{path.name}: per-layer rank_pattern / alpha_pattern; seal writes one r and "
                                 f"lora_alpha for all layers")
    return config


def chain_adapter(chain: list[tuple[dict[str, torch.Tensor], float]]) -> tuple[dict[str, torch.Tensor], float]:
    """One adapter (tensors, lora_alpha) computing the sum of the updates of `chain` ((tensors, scale)
    per version, oldest first): A stacked, B side by side, so B @ A is the sum of the B_i @ A_i. With
    one scale throughout, lora_alpha is that scale times the summed rank; otherwise each B_i carries
    its own scale and lora_alpha equals the summed rank (scale 1). A layer one version did not train
    gets zeros there, which keeps one rank for all layers."""
    if not chain:
        raise AdapterFormatError("the base model has no adapter to write")
    scales = {s for _, s in chain}
    same = len(scales) == 1
    shapes = {k[: -len(LORA_PARTS[0])]: (t[k].shape[1], t[k[: -len(LORA_PARTS[0])] + LORA_PARTS[1]].shape[0])
              for t, _ in chain for k in t if k.endswith(LORA_PARTS[0])}
    out = {}
    for name, (in_f, out_f) in shapes.items():
        a, b = [], []
        for tensors, scale in chain:
            r = next(v for k, v in tensors.items() if k.endswith(LORA_PARTS[0])).shape[0]
            a.append(tensors.get(name + LORA_PARTS[0], torch.zeros(r, in_f)).to(torch.float32))
            b.append(tensors.get(name + LORA_PARTS[1], torch.zeros(out_f, r)).to(torch.float32) * (1.0 if same else scale))
        out[name + LORA_PARTS[0]], out[name + LORA_PARTS[1]] = torch.cat(a), torch.cat(b, dim=1)
    rank = sum(next(v for k, v in t.items() if k.endswith(LORA_PARTS[0])).shape[0] for t, _ in chain)
    return out, (next(iter(scales)) * rank if same else float(rank))
