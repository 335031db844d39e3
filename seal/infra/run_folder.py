"""What a run folder holds and whether seal may run there, read without writing anything (`Folder`);
the `.seal-run` marker; atomic file writes; and the run folder's errors (`ResumeError`,
`RunFolderError`). `seal.infra.run_dir.RunDir` runs in the folder; `seal.infra.records_file` reads
and writes its records."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seal.infra.inputs import package_version
from seal.infra.run_lock import LOCK_NAME

MARKER = ".seal-run"
HYDRA_FILES = (".hydra", "cli.log")  # what Hydra writes into the run folder before seal starts


class ResumeError(RuntimeError):
    pass


class RunFolderError(ResumeError):
    """The run folder cannot be written (full, unwritable, in use) or holds corrupt records."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Folder:
    """What is in a folder, read without writing anything."""

    path: Path
    exists: bool
    names: list[str]

    @classmethod
    def read(cls, path: Path) -> Folder:
        if not path.is_dir():
            return cls(path, path.exists(), [])
        return cls(path, True, sorted(os.listdir(path)))

    def has(self, name: str) -> bool:
        return name in self.names

    @property
    def legacy(self) -> bool:
        """A run made before the marker existed."""
        return self.has("run.json") and (self.has("records.jsonl") or self.has("config.yaml"))

    @property
    def seals(self) -> bool:
        """seal made this folder (the lock alone: killed between taking it and writing the marker)."""
        return self.has(MARKER) or self.has(LOCK_NAME) or self.legacy

    @property
    def foreign(self) -> list[str]:
        if self.seals:
            return []
        return [n + ("/" if (self.path / n).is_dir() else "") for n in self.names if n not in HYDRA_FILES]

    def describe(self) -> str:
        if not self.exists:
            return "there is no such folder"
        if not self.path.is_dir():
            return "it is a file"
        foreign = self.foreign
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            return f"it holds {len(foreign)} file(s) that seal did not write: {shown}"
        if self.names:
            return f"it holds only Hydra's start-up files ({', '.join(self.names)}): seal never started a run there"
        return "it is empty"

    def refusal(self, resume: bool) -> str | None:
        """Why seal must not run in this folder, or None."""
        if resume:
            if not self.seals:
                return f"resume={self.path}: not a run folder ({self.describe()}); seal wrote nothing there. Check the path"
            if self.has("records.jsonl") and not self.has("run.json"):
                return f"resume={self.path}: not a run folder (records.jsonl without run.json)"
            return None
        if self.has("records.jsonl") and self.seals:
            return f"{self.path} already holds a run; pass resume={self.path} to continue it"
        if self.exists and not self.path.is_dir():
            return None  # mkdir names the problem
        if self.foreign:
            return (f"{self.path} is not empty ({self.describe()}); a new run needs a folder of its own: choose "
                    f"another with hydra.run.dir=<folder>. seal wrote nothing there")
        return None


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunFolderError(f"{path}: could not write ({e.strerror or e}); the previous file, if any, is "
                             f"untouched") from None


def marker_text(**extra: Any) -> str:
    return json.dumps({"seal": package_version("seal-rl"), "created_at": now(), "host": socket.gethostname(),
                       "pid": os.getpid(), **extra}, indent=2)
