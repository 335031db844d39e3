"""What both commands (`seal`, `seal-chat`) share about Hydra: where the configs are, the schemas they
compose against (`seal.infra.schemas`; `seal` adds one per recipe), and how Hydra's multi-line errors are
shown as one line."""

from __future__ import annotations

from pathlib import Path

from hydra.errors import OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from seal.chat.config import SessionConfig
from seal.infra.schemas import register

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")  # shipped inside the package

register({"seal_chat": SessionConfig}, recipes=False)  # seal/configs/seal_chat.yaml


def one_line(e: Exception) -> str:
    """Hydra's multi-line message (with the override it could not parse, and the OmegaConf error behind
    it) as one line; the config search path it lists after a missing config group is left out, and so is
    OmegaConf's node description, but not the key it names (`full_key`), which Hydra's own line may not:
    a bad value in a YAML file is reported by the file's name."""
    lines = [line.strip() for line in str(e).split("Config search path:")[0].splitlines() if line.strip()]
    key = _meta(lines, "full_key")
    lines = [line for line in lines if not line.startswith(_NODE_META)]
    cause = e.__cause__
    if isinstance(cause, OmegaConfBaseException):
        lines[1:1] = [str(cause).splitlines()[0].strip().rstrip(".") + "."]
        key = key or getattr(cause, "full_key", None)
    if key and key not in " ".join(lines):
        lines.insert(min(1, len(lines)), f"{key}:")
    if isinstance(e, OverrideParseException) and e.override not in str(e):
        lines.insert(0, f"cannot parse the override '{e.override}':")
    return " ".join(lines)


_NODE_META = ("full_key:", "reference_type=", "object_type=")  # OmegaConf's description of the node at fault


def _meta(lines: list[str], name: str) -> str | None:
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name + ":")), None)
