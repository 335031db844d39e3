"""A folder of committed adapter versions for learning while chatting (`seal.chat`).

Each version is one LoRA update trained on top of its parent (the base model with the parent's
chain merged), stored as `versions/vNNNN/adapter.safetensors` (PEFT key names) and `meta.json`
(source, content, probes, time, gain, retention, training stats). `HEAD` names the version a new
session loads; `/undo` moves it to the parent and pinning moves it anywhere, so nothing is ever
deleted. The model state of version v is base + every delta on the chain from the root to v.

Writes are atomic (a temporary folder inside the store, then `os.replace`), so a killed process
never leaves a half-written version or HEAD. Version names are checked against `vNNNN` and every
path is resolved and checked to lie inside the store, so neither a version name nor a planted
symlink can make the store write elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

VERSION = re.compile(r"^v\d{4,}$")
BASE = "base"  # HEAD value when no version is active


class StoreError(RuntimeError):
    """The adapter store cannot do what was asked; the message names the store and the version."""


class AdapterStore:
    def __init__(self, root: str | Path, model_id: str):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "versions").mkdir(exist_ok=True)
        self._inside(self.root / "versions")
        info = self.root / "store.json"
        if info.is_file():
            stored = json.loads(info.read_text()).get("model")
            if stored != model_id:
                raise StoreError(f"adapter store {self.root} holds adapters for model '{stored}', not '{model_id}': "
                                 f"use another chat.store")
        else:
            self.write_text(info, json.dumps({"model": model_id, "created": _now()}, indent=2))
        self.model_id = model_id

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
        return json.loads(path.read_text())

    def head(self) -> str | None:
        path = self.root / "HEAD"
        if not path.is_file():
            return None
        value = path.read_text().strip()
        if value == BASE:
            return None
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

    def tensors(self, version: str) -> dict[str, torch.Tensor]:
        return load_file(str(self._folder(version) / "adapter.safetensors"))

    # ------------------------------------------------------------------ writing

    def commit(self, tensors: dict[str, torch.Tensor], meta: dict) -> str:
        """Write a new version whose parent is HEAD and move HEAD to it; returns its name."""
        existing = self.versions()
        version = f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"
        final = self._folder(version)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "adapter.safetensors"))
            record = {**meta, "version": version, "parent": self.head(), "time": _now()}
            (tmp / "meta.json").write_text(json.dumps(record, indent=2))
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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
