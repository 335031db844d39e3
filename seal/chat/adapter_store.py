"""A folder of committed adapter versions for learning while chatting (`seal.chat`).

Each version is one LoRA update trained on top of its parent (the base model with the parent's
chain merged), stored as a PEFT adapter folder `versions/vNNNN/` (`adapter_config.json`,
`adapter_model.safetensors`; `seal.chat.peft_format`) with `meta.json` beside them (source, content,
probes, time, gain, retention, training stats). `HEAD` names the version a new session loads; `/undo`
moves it to the parent and pinning moves it anywhere, so nothing is ever deleted. The model state of
version v is base + every delta on the chain from the root to v; `export` writes that state as one
PEFT adapter. Versions of stores written before the PEFT format (`adapter.safetensors`) still load.

Writes are atomic (a temporary folder inside the store, then `os.replace`), so a killed process
never leaves a half-written version or HEAD. Version names are checked against `vNNNN` and every
path is resolved and checked to lie inside the store, so neither a version name nor a planted
symlink can make the store write elsewhere. Version folders are private to their owner (mode 700):
`meta.json` keeps the learned text in full, as plain text.

Reading is checked as well: a store file that is not what seal writes (unreadable JSON, a corrupt
safetensors file, an adapter with non-finite values, shapes that do not fit the model's layers, or
a scale outside what seal writes) is a `StoreError` naming the file or the version and field.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from seal.chat.peft_format import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    AdapterFormatError,
    chain_adapter,
    read_adapter,
    write_adapter,
)

VERSION = re.compile(r"^v\d{4,}$")
BASE = "base"  # HEAD value when no version is active
MAX_SCALE = 16.0  # the largest LoRA scale (lora_alpha / lora_r) seal-chat writes, and so accepts on load


class StoreError(RuntimeError):
    """The adapter store cannot do what was asked; the message names the store and the version."""


class AdapterStore:
    """`model_id`: the model the store belongs to (checked on open); `base_model`: what the PEFT folders
    name as their base (`base_model_name_or_path`; default `model_id`), a hub id or the model's folder."""

    def __init__(self, root: str | Path, model_id: str, base_model: str | None = None):
        self.root = Path(root).expanduser().resolve()
        try:
            (self.root / "versions").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"adapter store {self.root}: cannot create it ({e.strerror or e}); "
                             f"choose another chat.store") from None
        self._inside(self.root / "versions")
        info = self.root / "store.json"
        if info.is_file():
            stored = self._read_json(info).get("model")
            if stored != model_id:
                raise StoreError(f"adapter store {self.root} holds adapters for model '{stored}', not '{model_id}': "
                                 f"use another chat.store")
        else:
            self.write_text(info, json.dumps({"model": model_id, "created": _now()}, indent=2))
        self.model_id, self.base_model = model_id, base_model or model_id

    # ------------------------------------------------------------------ paths

    def _inside(self, path: Path) -> Path:
        """`path` resolved, refused unless it lies inside the store (symlinks are resolved first)."""
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise StoreError(f"adapter store {self.root}: {path} resolves to {resolved}, outside the store; refused")
        return resolved

    def _folder(self, version: str) -> Path:
        if not isinstance(version, str) or not VERSION.match(version):
            raise StoreError(f"adapter store {self.root}: '{version}' is not a version name (expected vNNNN)")
        return self._inside(self.root / "versions" / version)

    def _name(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if self.root in path.parents else str(path)

    def _read_text(self, path: Path) -> str:
        try:
            return path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise StoreError(f"adapter store {self.root}: {self._name(path)} is unreadable ({reason})") from None

    def _read_json(self, path: Path) -> dict:
        """A store file's JSON object; a `StoreError` naming the file when it is corrupt."""
        try:
            data = json.loads(self._read_text(path))
        except (ValueError, RecursionError) as e:
            reason = str(e) if isinstance(e, ValueError) else "nested too deeply"
            raise StoreError(f"adapter store {self.root}: {self._name(path)} is corrupt (not JSON: {reason}); "
                             f"restore it, or move that file's version out of the store") from None
        if not isinstance(data, dict):
            raise StoreError(f"adapter store {self.root}: {self._name(path)} is corrupt (a JSON "
                             f"{type(data).__name__}, not an object)")
        return data

    def write_text(self, path: Path, text: str) -> None:
        path = self._inside(path)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    # ------------------------------------------------------------------ reading

    def versions(self) -> list[str]:
        names = [p.name for p in (self.root / "versions").iterdir() if VERSION.match(p.name) and self._inside(p)]
        return sorted(names, key=lambda v: int(v[1:]))

    def meta(self, version: str) -> dict:
        path = self._folder(version) / "meta.json"
        if not path.is_file():
            raise StoreError(f"adapter store {self.root}: no version {version}")
        return self._read_json(path)

    def head(self) -> str | None:
        path = self.root / "HEAD"
        if not path.is_file():
            return None
        value = self._read_text(path).strip()
        if value == BASE:
            return None
        if not VERSION.match(value):
            raise StoreError(f"adapter store {self.root}: HEAD names {value[:40]!r}, not a version (vNNNN or base); "
                             f"pin a version with chat.version=<vNNNN|base>")
        self._folder(value)
        return value

    def chain(self, version: str | None) -> list[str]:
        """The versions from the root to `version`, oldest first ([] for the base model)."""
        out: list[str] = []
        while version is not None:
            if version in out:
                raise StoreError(f"adapter store {self.root}: the parents of {version} form a cycle")
            out.append(version)
            version = self.meta(version).get("parent")
        return out[::-1]

    def _load(self, path: Path) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(self._inside(path)))
        except (OSError, SafetensorError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:200]
            raise StoreError(f"adapter store {self.root}: {self._name(path)} is unreadable ({reason})") from None

    def _read(self, version: str) -> tuple[dict[str, torch.Tensor], dict | None]:
        """(layer name -> tensor, adapter_config.json or None for an old-format version)."""
        try:
            return read_adapter(self._folder(version), self._load)
        except AdapterFormatError as e:
            raise StoreError(f"adapter store {self.root}: version {version}: {e}") from None

    def tensors(self, version: str) -> dict[str, torch.Tensor]:
        """The LoRA weights of `version` under the model's layer names (`<layer>.lora_A.weight`)."""
        return self._read(version)[0]

    def adapter(self, version: str, shapes: dict[str, tuple[int, int]], default_scale: float
                ) -> tuple[dict[str, torch.Tensor], float]:
        """The tensors and scale of `version`, checked (`check_adapter`) against the model's target layers
        `shapes` (layer name -> weight shape); `default_scale` for an old-format version whose meta has
        none. A PEFT folder's r and lora_alpha must agree with its tensors and meta.json's scale."""
        meta = self.meta(version)
        tensors, config = self._read(version)
        where = f"adapter store {self.root}: version {version}"
        scale = meta.get("scale", default_scale if config is None else config["lora_alpha"] / config["r"])
        check_adapter(tensors, scale, shapes, where, meta)
        if config is not None:
            rank = next(t for k, t in tensors.items() if k.endswith(".lora_A.weight")).shape[0]
            if config["r"] != rank or not math.isclose(config["lora_alpha"] / config["r"], scale):
                raise StoreError(f"{where}: {CONFIG_FILE} has r={config['r']!r}, lora_alpha={config['lora_alpha']!r}, "
                                 f"but the tensors have rank {rank} and meta.json's scale is {scale!r}; refused")
        return tensors, float(scale)

    def export(self, version: str, out: str | Path, shapes: dict[str, tuple[int, int]], default_scale: float) -> Path:
        """Write the model state of `version` (every update of its chain, checked as `adapter` does) as one
        PEFT adapter folder `out`, for `PeftModel.from_pretrained` or vLLM. `out` must be new, empty,
        or an earlier export; returns it resolved."""
        out = Path(out).expanduser().resolve()
        if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - {CONFIG_FILE, WEIGHTS_FILE}):
            raise StoreError(f"export: {out} exists and is not an empty folder or an earlier export; choose a new one")
        scoped = [v for v in self.chain(version) if self.meta(v).get("scope") is not None]
        if scoped:
            raise StoreError(f"export: {', '.join(scoped)} of adapter store {self.root} were learned with "
                             f"chat.memory=scoped: each applies only to prompts that name its content, which one "
                             f"PEFT adapter cannot express (learn with chat.memory=merged to export)")
        tensors, alpha = chain_adapter([self.adapter(v, shapes, default_scale) for v in self.chain(version)])
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_adapter(out, tensors, alpha, self.base_model)
        except OSError as e:
            raise StoreError(f"export: cannot write {out} ({e.strerror or e})") from None
        return out

    # ------------------------------------------------------------------ writing

    def commit(self, tensors: dict[str, torch.Tensor], meta: dict) -> str:
        """Write a new version whose parent is HEAD and move HEAD to it; returns its name."""
        existing = self.versions()
        version = f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"
        final = self._folder(version)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            record = {**meta, "version": version, "parent": self.head(), "time": _now()}
            write_adapter(tmp, tensors, _alpha(tensors, meta), self.base_model)
            (tmp / "meta.json").write_text(json.dumps(record, indent=2))
            os.chmod(tmp / "meta.json", 0o600)  # the learned text, in plain text (the folder is 700 as well)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.set_head(version)
        return version

    def set_head(self, version: str | None) -> None:
        if version is not None:
            self.meta(version)  # must exist
        self.write_text(self.root / "HEAD", version or BASE)

    def undo(self) -> tuple[str, str | None]:
        """Move HEAD to its parent; returns (undone, new head). The undone version stays on disk."""
        head = self.head()
        if head is None:
            raise StoreError("nothing to undo: the base model is active")
        parent = self.meta(head).get("parent")
        self.set_head(parent)
        return head, parent


def check_adapter(tensors: dict[str, torch.Tensor], scale, shapes: dict[str, tuple[int, int]], where: str,
                  meta: dict | None = None) -> None:
    """Refuse (a `StoreError` naming `where` and the field) an adapter seal could not have written for
    this model: a scale outside (0, MAX_SCALE] or not lora_alpha / lora_r, a tensor that is not a LoRA
    weight of one of the target layers, non-finite values, or shapes that do not fit the layer."""
    meta = meta or {}
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= MAX_SCALE:
        raise StoreError(f"{where}: field 'scale' is {scale!r}; seal writes a scale (lora_alpha / lora_r) in "
                         f"(0, {MAX_SCALE:g}]; refused (a tampered or foreign adapter?)")
    pairs = _lora_pairs(tensors, shapes, where)
    ranks = {a.shape[0] for a, _ in pairs.values()}
    if len(ranks) != 1:
        raise StoreError(f"{where}: the layers have different ranks {sorted(ranks)}; seal writes one rank per adapter")
    (rank,) = ranks
    if "lora_r" in meta and meta["lora_r"] != rank:
        raise StoreError(f"{where}: field 'lora_r' is {meta['lora_r']!r} but the tensors have rank {rank}; refused")
    alpha = meta.get("lora_alpha")
    if alpha is not None and not (isinstance(alpha, (int, float)) and math.isclose(alpha / rank, scale)):
        raise StoreError(f"{where}: field 'scale' is {scale!r}, not lora_alpha / lora_r = {alpha!r} / {rank}; refused")


def _lora_pairs(tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, int]], where: str
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """layer name -> (lora_A, lora_B), every tensor checked for its name, values and shape."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        name, sep, part = key.rpartition(".lora_")
        if not sep or part not in ("A.weight", "B.weight"):
            raise StoreError(f"{where}: tensor '{key}' is not a LoRA weight (<layer>.lora_A.weight or .lora_B.weight)")
        if name not in shapes:
            raise StoreError(f"{where}: tensor '{key}': '{name}' is not one of the model's target layers (trained on "
                             f"another model, or with other inner_loop.target_modules?)")
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise StoreError(f"{where}: tensor '{key}' holds non-finite values (NaN or inf) or is not floating point")
        parts.setdefault(name, {})[part[0]] = t
    if not parts:
        raise StoreError(f"{where}: the adapter holds no LoRA weights")
    pairs = {}
    for name, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise StoreError(f"{where}: layer '{name}' has lora_{''.join(ab)} without its partner")
        a, b, (out_f, in_f) = ab["A"], ab["B"], shapes[name]
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != in_f or b.shape[0] != out_f or b.shape[1] != a.shape[0] \
                or not 1 <= a.shape[0] <= min(out_f, in_f):
            raise StoreError(f"{where}: layer '{name}': lora_A {list(a.shape)} and lora_B {list(b.shape)} do not fit "
                             f"its weight {[out_f, in_f]}")
        pairs[name] = (a, b)
    return pairs


def apply_adapter(model: torch.nn.Module, tensors: dict[str, torch.Tensor], scale: float, sign: float = 1.0) -> None:
    """Merge a stored adapter into `model`'s weights: W += sign * scale * B @ A for every layer."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, a in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            name = key[: -len(".lora_A.weight")]
            if name not in modules:
                raise StoreError(f"adapter layer '{name}' is not in the model (was it trained on another model?)")
            w = modules[name].weight
            b = tensors[f"{name}.lora_B.weight"]
            w += (b.to(torch.float32) @ a.to(torch.float32)).mul_(sign * scale).to(w.dtype).to(w.device)


def _alpha(tensors: dict[str, torch.Tensor], meta: dict) -> float:
    """lora_alpha of a new version: meta's `lora_alpha`, or its `scale` times the rank."""
    if "lora_alpha" in meta:
        return meta["lora_alpha"]
    if "scale" not in meta:
        raise StoreError("a version is committed with its meta's 'scale' (lora_alpha / lora_r) or 'lora_alpha'")
    return meta["scale"] * next(t for k, t in tensors.items() if k.endswith(".lora_A.weight")).shape[0]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
