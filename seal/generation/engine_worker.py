"""Generation in a separate worker process, with inner-loop adapters handed over as files.

Why a process: a vLLM engine does not reliably give its GPU memory back in place, so the engine
lives in a spawned worker that is restarted whenever the model changes (a new policy after an
M-step); training stays in the parent process on the same GPU, the two sharing it through a memory
split (`backend.gpu_memory_utilization`) and, optionally, vLLM's sleep mode between calls.

Adapters travel as PEFT-format folders (`adapter_config.json` + `adapter_model.safetensors`) in a
RAM-backed directory (`/dev/shm` where it exists), each under a fresh integer id that is never
reused (vLLM caches adapters by id), and are deleted as soon as the call that used them returns.

Two engines speak the same protocol: `vllm` (`seal.generation.vllm.VLLMEngine`) and `peft`
(transformers + PEFT, reading the same adapter files). The `peft` engine runs anywhere; it is what
the CPU tests drive, and it is the reference side of the vLLM parity test.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from seal.generation.errors import BackendError
from seal.generation.hf import SamplingConfig

# ------------------------------------------------------------------------------------ adapter files

@dataclass(frozen=True)
class AdapterRef:
    name: str
    id: int
    path: str


def ram_dir() -> str:
    """A RAM-backed folder for adapter files where the OS has one, else the temp folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


class AdapterStore:
    """Writes LoRA weights (PEFT key names, as `MultiLoRA.slot_state` gives them) to adapter folders,
    each with a fresh id, and removes them. `close()` removes the whole store folder."""

    def __init__(self, r: int, alpha: float, target_modules: list[str], root: str | None = None,
                 layers_to_transform: list[int] | None = None):
        self.r, self.alpha, self.target_modules = r, alpha, list(target_modules)
        self.layers_to_transform = list(layers_to_transform or []) or None
        self.root = Path(tempfile.mkdtemp(prefix="seal-adapters-", dir=root or ram_dir()))
        self._next_id = 1
        self.live: dict[int, AdapterRef] = {}

    def write(self, state: dict[str, torch.Tensor]) -> AdapterRef:
        from safetensors.torch import save_file

        bad = [k for k in state if not k.endswith((".lora_A.weight", ".lora_B.weight"))]
        if bad:  # e.g. modules_to_save weights: vLLM cannot serve them
            raise BackendError(f"adapter has weights other than LoRA A/B ({bad[0]}, ...): vLLM serves LoRA "
                               "adapters without modules_to_save only")
        ranks = {t.shape[0] for k, t in state.items() if k.endswith(".lora_A.weight")}
        if ranks != {self.r}:
            raise BackendError(f"adapter ranks {sorted(ranks)} differ from the store's r={self.r}")
        ref = AdapterRef(name=f"adapter-{self._next_id}", id=self._next_id, path=str(self.root / f"a{self._next_id}"))
        self._next_id += 1
        Path(ref.path).mkdir()
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": self.r, "lora_alpha": self.alpha,
                  "target_modules": self.target_modules, "layers_to_transform": self.layers_to_transform,
                  "lora_dropout": 0.0, "bias": "none",
                  "modules_to_save": None, "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
                  "base_model_name_or_path": None, "inference_mode": True}
        (Path(ref.path) / "adapter_config.json").write_text(json.dumps(config, indent=1))
        save_file({f"base_model.model.{k}": v.detach().float().contiguous().cpu() for k, v in state.items()},
                  str(Path(ref.path) / "adapter_model.safetensors"))
        self.live[ref.id] = ref
        return ref

    def remove(self, ref: AdapterRef) -> None:
        shutil.rmtree(ref.path, ignore_errors=True)
        self.live.pop(ref.id, None)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.live.clear()


# ------------------------------------------------------------------------------------------ engines

class PeftEngine:
    """transformers + PEFT behind the worker protocol: adapters loaded from their files per call."""

    def __init__(self, model_path: str, dtype: str = "float32", device: str = "auto", **_):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from seal.generation.hf import HFGenerator
        from seal.models.loading import resolve_device

        self.tok = AutoTokenizer.from_pretrained(model_path)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.base = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(
            resolve_device(device)).eval()
        self.generator_cls = HFGenerator
        self.sleeping = False

    def generate(self, prompts: list[str], sampling: dict, seed: int, loras: list | None, with_ids: bool = False
                 ) -> list:
        from peft import PeftModel

        cfg = SamplingConfig(**sampling)
        groups: dict[tuple | None, list[int]] = {}
        for i in range(len(prompts)):
            groups.setdefault(None if loras is None or loras[i] is None else tuple(loras[i]), []).append(i)
        out: list = [""] * len(prompts)
        for lora, idx in groups.items():
            model = self.base if lora is None else PeftModel.from_pretrained(self.base, lora[2], adapter_name=lora[0])
            texts = self.generator_cls(model, self.tok).generate([prompts[i] for i in idx], cfg, seed=seed,
                                                                 with_ids=with_ids)
            if lora is not None:
                self.base = model.unload()  # drop the adapter, keep the base weights untouched
            for i, t in zip(idx, texts):
                out[i] = t
        return out

    def sleep(self) -> None:
        self.sleeping = True

    def wake_up(self) -> None:
        self.sleeping = False


def _make_engine(kind: str, model_path: str, options: dict):
    if kind == "peft":
        return PeftEngine(model_path, **options)
    if kind == "vllm":
        from seal.generation.vllm import VLLMEngine

        return VLLMEngine(model_path, **options)
    raise BackendError(f"unknown engine '{kind}' (peft | vllm)")


def _serve(conn, kind: str, model_path: str, options: dict) -> None:
    """The worker process: build the engine, then answer (method, args) requests until 'close'."""
    try:
        engine = _make_engine(kind, model_path, options)
        conn.send(("ready", os.getpid()))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        method, args = conn.recv()
        if method == "close":
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(engine, method)(*args)))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))


class EngineWorker:
    """An engine of `kind` on `model_path` in a spawned process; `restart` gives a fresh process."""

    def __init__(self, kind: str, model_path: str, options: dict | None = None, start_timeout_s: float = 1800):
        self.kind, self.options, self.start_timeout_s = kind, dict(options or {}), start_timeout_s
        self.proc = self.conn = None
        self.model_path = model_path
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no CUDA state inherited from the trainer
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.kind, self.model_path, self.options), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        if not parent.poll(self.start_timeout_s):
            self.close()
            raise BackendError(f"{self.kind} engine on {self.model_path} did not start in {self.start_timeout_s:.0f} s")
        status, payload = self._recv()
        if status != "ready":
            self.close()
            raise BackendError(f"{self.kind} engine on {self.model_path} failed to start:\n{payload}")
        self.pid = payload

    def _recv(self):
        try:
            return self.conn.recv()
        except EOFError:
            code = self.proc.exitcode if self.proc else None
            raise BackendError(f"{self.kind} engine worker died (exit code {code})") from None

    def call(self, method: str, *args):
        if self.proc is None or not self.proc.is_alive():
            raise BackendError(f"{self.kind} engine worker is not running")
        self.conn.send((method, args))
        status, payload = self._recv()
        if status != "ok":
            raise BackendError(f"{self.kind} engine failed in {method}:\n{payload}")
        return payload

    def restart(self, model_path: str | None = None) -> None:
        """Stop the worker and start a fresh one (on a new model, e.g. the next round's policy)."""
        self.close()
        if model_path is not None:
            self.model_path = model_path
        self._start()

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(("close", ()))
                self.conn.poll(30) and self.conn.recv()
            except (OSError, EOFError):
                pass
            self.proc.join(30)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None


# -------------------------------------------------------------------------------- generator facade

class WorkerGenerator:
    """The `Generator` protocol over an engine worker. For a call with `adapters`, the adapters of
    the slots it names are written from `lora` (a `MultiLoRA`), passed by fresh id, and removed."""

    def __init__(self, worker: EngineWorker, store: AdapterStore, lora=None, sleep_between_calls: bool = False):
        self.worker, self.store, self.lora, self.sleep_between_calls = worker, store, lora, sleep_between_calls
        if sleep_between_calls:
            self.worker.call("sleep")

    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int = 0, desc: str | None = None,
                 adapters: list[int] | None = None, with_ids: bool = False) -> list:
        if not prompts:
            return []
        if adapters is not None and (self.lora is None or len(adapters) != len(prompts)):
            raise ValueError("per-prompt adapters need a MultiLoRA and one adapter index per prompt")
        refs: dict[int, AdapterRef] = {}
        try:
            for slot in sorted({a for a in adapters or [] if a >= 0}):
                refs[slot] = self.store.write(self.lora.slot_state(slot))
            loras = None if adapters is None else [
                None if a < 0 else (refs[a].name, refs[a].id, refs[a].path) for a in adapters]
            if self.sleep_between_calls:
                self.worker.call("wake_up")
            try:
                out = self.worker.call("generate", list(prompts), asdict(sampling), seed, loras, with_ids)
                return [tuple(x) for x in out] if with_ids else out
            finally:
                if self.sleep_between_calls:
                    self.worker.call("sleep")
        finally:
            for ref in refs.values():
                self.store.remove(ref)

    def restart(self, model_path: str) -> None:
        self.worker.restart(model_path)
        if self.sleep_between_calls:
            self.worker.call("sleep")

    def close(self) -> None:
        self.worker.close()
        self.store.close()
