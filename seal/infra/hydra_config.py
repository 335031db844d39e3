"""What both commands (`seal`, `seal-chat`) share about Hydra: where the configs are, and how Hydra's
multi-line errors are shown as one line."""

from __future__ import annotations

from pathlib import Path

from hydra.errors import OverrideParseException
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")  # shipped inside the package


def one_line(e: Exception) -> str:
    """Hydra's multi-line message (with the override it could not parse, and the OmegaConf error behind
    it) as one line; the config search path it lists after a missing config group is left out."""
    lines = [line.strip() for line in str(e).split("Config search path:")[0].splitlines() if line.strip()]
    if isinstance(e.__cause__, OmegaConfBaseException):
        lines[1:1] = [str(e.__cause__).splitlines()[0].strip().rstrip(".") + "."]
    if isinstance(e, OverrideParseException) and e.override not in str(e):
        lines.insert(0, f"cannot parse the override '{e.override}':")
    return " ".join(lines)
