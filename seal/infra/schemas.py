"""Hydra structured-config schemas made from seal's config dataclasses, so that composition itself is typed.

Hydra composes `seal/configs/` against a schema stored in its ConfigStore (group `schema`, at the root of the
config): `lr=abc` or an unknown key fails while the config is composed, before any run folder exists, and
`--cfg job` shows every key that takes effect, the dataclass defaults included. The primary configs pick
their schema first in their defaults list (`schema: ki_eval`); an experiment of another recipe says
`override /schema: <recipe>`, so its YAML files still merge on top of the schema's defaults.

The config dataclasses themselves are not stored. They are frozen, and OmegaConf makes a frozen
dataclass's nodes read-only, which Hydra's merges cannot write into; and a field typed `Literal[...]` (a
closed set of names) has no OmegaConf type. So each one gets a schema twin with the same fields and
defaults: not frozen, its `Literal` fields as Enums (a bad name fails when composed, listing the choices),
its sections as their twins. `to_config` turns a validated twin back into the frozen dataclass, names as
plain strings, so the library sees exactly what it always did.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from omegaconf import MISSING, OmegaConf

from seal.infra.run_dir import RESUME_INPUTS

GROUP = "schema"  # the ConfigStore group of the root schemas

_TWIN: dict[type, type] = {}  # config dataclass -> its schema twin
_REAL: dict[type, type] = {}  # schema twin -> config dataclass
_ENUMS: dict[tuple[str, ...], type[enum.Enum]] = {}


@dataclass(frozen=True)
class Experiment:
    name: str = MISSING  # the run folder's parent: runs/<name>/<time>
    recipe: str = MISSING  # the code that runs it (`seal.cli.recipes`)


@dataclass(frozen=True)
class RunOptions:
    """The root keys about running rather than about the experiment (`seal.cli.RUN_KEYS`)."""
    resume: str | None = None  # a run folder to continue
    force_resume: bool = False  # resume although the config changed
    resume_inputs: Literal[RESUME_INPUTS] = "check"  # an input file changed since the run started
    plan: bool = False  # write plan.json / plan.md only
    sweep_metric: str | None = None  # seal -m: the results.json value each job returns to the sweeper


def schema(cls: type) -> type:
    """The schema twin of config dataclass `cls` (made once)."""
    if cls not in _TWIN:
        twin = dataclasses.make_dataclass(cls.__name__, _fields(cls))
        twin.__doc__ = cls.__doc__ or f"Schema of {cls.__module__}.{cls.__qualname__}."
        _TWIN[cls], _REAL[twin] = twin, cls
    return _TWIN[cls]


def root_schema(cls: type, recipe: str | None = None) -> type:
    """The schema a whole config composes against: `cls`'s fields, and for a recipe (`seal experiment=...`)
    the `experiment` section first and the run options last."""
    if recipe is None:
        return schema(cls)
    exp = schema(Experiment)
    first = [("experiment", exp, field(default_factory=lambda: exp(recipe=recipe)))]
    return dataclasses.make_dataclass(cls.__name__, first + _fields(cls) + _fields(RunOptions))


def register(roots: Mapping[str, type], recipes: bool) -> None:
    """Store `name -> config dataclass` as `schema/<name>` at the config's root (`_global_`). A dict of
    free names and values (`inner_loop.scheduler_kwargs`, `from_files`) takes a new key on the command line
    without Hydra's `+`; the sections' own keys stay fixed."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, cls in roots.items():
        node = OmegaConf.structured(root_schema(cls, name if recipes else None))
        for path in _free_dicts(cls):
            OmegaConf.set_struct(OmegaConf.select(node, path), False)
        cs.store(group=GROUP, name=name, node=node, package="_global_")


def _free_dicts(cls: type, prefix: str = "") -> Iterator[str]:
    """Dotted keys of the `dict[str, <not a section>]` fields of `cls` and of its sections."""
    for key, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            yield from _free_dicts(hint, f"{prefix}{key}.")
        elif typing.get_origin(hint) is dict and not dataclasses.is_dataclass(args[1]):
            yield prefix + key


def to_config(value: Any) -> Any:
    """A validated value (`OmegaConf.to_object` of a schema node) as the config dataclasses hold it: twins
    become their dataclasses, Enum names plain strings."""
    if dataclasses.is_dataclass(value) and type(value) in _REAL:
        return _REAL[type(value)](**{f.name: to_config(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [to_config(v) for v in value]
    if isinstance(value, dict):
        return {k: to_config(v) for k, v in value.items()}
    return value


def names_enum(names: tuple[str, ...]) -> type[enum.Enum]:
    """The Enum OmegaConf checks a `Literal[names]` field against (member name = value = the name)."""
    if names not in _ENUMS:
        _ENUMS[names] = enum.Enum("OneOf", [(n, n) for n in names], module=__name__)
    return _ENUMS[names]


def _fields(cls: type) -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, _schema_type(hints[f.name]), _schema_default(f)) for f in dataclasses.fields(cls) if f.init]


def _schema_type(hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return names_enum(tuple(str(a) for a in args))
    if dataclasses.is_dataclass(hint):
        return schema(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        return Optional[_schema_type(next(a for a in args if a is not type(None)))]  # noqa: UP045 - OmegaConf's spelling
    if origin is list:
        return list[_schema_type(args[0])]
    if origin is dict:
        return dict[args[0], _schema_type(args[1])]
    return hint


def _schema_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        make = f.default_factory
        return field(default_factory=lambda: _twin_value(make()))
    if f.default is dataclasses.MISSING:
        return field(default=MISSING)
    if dataclasses.is_dataclass(f.default) or isinstance(f.default, (list, dict)):
        value = f.default
        return field(default_factory=lambda: _twin_value(value))
    return field(default=f.default)


def _twin_value(value: Any) -> Any:
    """A default value with every config dataclass in it replaced by its (writable) twin."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return schema(type(value))(**{f.name: _twin_value(getattr(value, f.name))
                                      for f in dataclasses.fields(value) if f.init})
    if isinstance(value, list):
        return [_twin_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _twin_value(v) for k, v in value.items()}
    return value
