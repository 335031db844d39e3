"""Turning Hydra's composed config into typed dataclasses, and deriving seeds.

Library code never sees a DictConfig: the entry point calls `to_dataclass` for each module's
section, which rejects unknown keys and wrong types with the offending key in the message.
Every random choice in a run is seeded by `derive_seed(config_seed, *names)`, a stable hash, so a
result can be reproduced from the config and the record's key alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seal.infra.schemas import schema, to_config

T = TypeVar("T")


class ConfigError(ValueError):
    """An impossible or malformed config; the message names the key."""


def require_at_least(cfg, section: str, names, low: int, note: str = "") -> None:
    """A `ConfigError` naming `<section>.<name>` for the first of `names` (attributes of `cfg`) below `low`:
    "must be at least 1", "must not be negative" (low 0), or "must be at least <low>", then `note`."""
    for name in names:
        value = getattr(cfg, name)
        if value < low:
            need = "must not be negative" if low == 0 else f"must be at least {low}"
            raise ConfigError(f"{section}.{name} {need}{note}, got {value}")


def to_dataclass(cls: type[T], node: Any, where: str) -> T:
    """Validate `node` (a DictConfig/dict section) against dataclass `cls` and build it: the node is merged
    into `cls`'s schema (`seal.infra.schemas`, the one Hydra composes against), so a value is read the same
    way here as on the command line."""
    if node is None:
        node = {}
    try:
        _check_sections(cls, node, "", where)
        merged = OmegaConf.merge(OmegaConf.structured(schema(cls)), node)
        return to_config(OmegaConf.to_object(merged))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        msg = str(e).splitlines()[0]
        raise ConfigError(f"config section '{where}'" + (f", key '{key}'" if key else "") + f": {msg}") from None


def _check_sections(cls: type, node: Any, prefix: str, where: str) -> None:
    """A scalar where a section belongs (`wandb=offline`): OmegaConf's merge error names no key, so name it."""
    if not isinstance(node, (dict, DictConfig)):
        return
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        sub = hints.get(f.name)
        if f.name in node and dataclasses.is_dataclass(sub):
            val = node[f.name]
            if val is not None and not isinstance(val, (dict, DictConfig)) and not dataclasses.is_dataclass(val):
                raise ConfigError(f"config section '{where}', key '{prefix}{f.name}': expected a section of "
                                  f"{sub.__name__} fields, got {type(val).__name__} {val!r}")
            _check_sections(sub, val, f"{prefix}{f.name}.", where)


def plain(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (for writing to disk); a name checked against a closed
    set (an Enum in the schema) comes back as the plain string."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


def derive_seed(base: int, *names: Any) -> int:
    """A 31-bit seed from the config seed and a tuple of names (stable across runs and machines)."""
    h = hashlib.sha256(repr((int(base),) + tuple(str(n) for n in names)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF
