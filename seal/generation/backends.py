"""Choosing the generation backend: `backend=hf` (default), `backend=vllm`, `backend=peft`.

- `hf`: transformers `generate` on the resident model, adapters routed in-process (`HFGenerator`).
- `vllm`: vLLM's offline engine in a worker process on the same GPU (`seal.generation.vllm`).
- `peft`: the vLLM backend's worker and adapter-file protocol with a transformers + PEFT engine;
  for checking that path on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from seal.infra.config import ConfigError

Backend = Literal["hf", "vllm", "peft"]
BACKENDS = get_args(Backend)


@dataclass(frozen=True)
class BackendConfig:
    name: Backend = "hf"
    gpu_memory_utilization: float = 0.35  # vLLM's share of the GPU; training uses the rest
    max_loras: int = 0  # adapters in one vLLM batch; 0: the inner loop's K
    sleep_between_calls: bool = False  # vLLM sleep mode: free the engine's GPU memory while training
    enforce_eager: bool = False  # skip CUDA-graph capture (faster start, slower decoding)
    max_model_len: int | None = None  # None: the model's own
    dtype: str = "auto"  # vLLM dtype; auto: the model's
    adapter_dir: str | None = None  # where adapter files are written; None: /dev/shm (RAM) if present
    start_timeout_s: float = 1800.0


def validate(cfg: BackendConfig, lora_r: int) -> None:
    if cfg.name not in BACKENDS:
        raise ConfigError(f"backend.name: unknown backend '{cfg.name}' (choose {', '.join(BACKENDS)})")
    if not 0 < cfg.gpu_memory_utilization < 1:
        raise ConfigError(f"backend.gpu_memory_utilization must be in (0, 1): it is vLLM's share of the GPU and "
                          f"training needs the rest; got {cfg.gpu_memory_utilization}")
    if cfg.max_loras < 0:
        raise ConfigError(f"backend.max_loras must be 0 (the inner loop's K) or more, got {cfg.max_loras}")
    if cfg.name == "vllm":
        from seal.generation.vllm import max_lora_rank

        try:
            max_lora_rank(lora_r)
        except Exception as e:  # noqa: BLE001 - re-raised as a config error naming the key
            raise ConfigError(str(e)) from None


def make_generator(cfg: BackendConfig, model_path: str | None, model, tok, lora, lora_cfg, k: int, seed: int):
    """The generator a task uses: in-process for `hf`, an engine worker for `vllm` / `peft`.
    `lora` is the inner loop's MultiLoRA (adapters by slot), `lora_cfg` its InnerLoopConfig."""
    from seal.generation.hf import HFGenerator

    validate(cfg, lora_cfg.lora_r)
    if cfg.name == "hf":
        return HFGenerator(model, tok, router=lora)
    from seal.generation.engine_worker import AdapterStore, EngineWorker, WorkerGenerator

    if model_path is None:
        raise ConfigError(f"backend={cfg.name} loads the model from a folder or hub id in its worker; "
                          "model.name=tiny-random has none (save it with save_pretrained and pass the folder)")
    if cfg.name == "vllm":
        from seal.generation.vllm import max_lora_rank, require_vllm

        require_vllm()
        options = dict(max_loras=cfg.max_loras or k, max_lora_rank=max_lora_rank(lora_cfg.lora_r),
                       gpu_memory_utilization=cfg.gpu_memory_utilization, dtype=cfg.dtype, seed=seed,
                       max_model_len=cfg.max_model_len, enforce_eager=cfg.enforce_eager,
                       enable_sleep_mode=cfg.sleep_between_calls)
    else:
        options = dict(dtype=str(next(model.parameters()).dtype).removeprefix("torch."), device="auto")
    worker = EngineWorker(cfg.name, model_path, options, start_timeout_s=cfg.start_timeout_s)
    store = AdapterStore(lora_cfg.lora_r, lora_cfg.lora_alpha, lora_cfg.target_modules, root=cfg.adapter_dir,
                         layers_to_transform=lora_cfg.layers_to_transform)
    return WorkerGenerator(worker, store, lora, sleep_between_calls=cfg.sleep_between_calls)
