"""Training directives: the last line of an `implications-hp` self-edit, in which the policy chooses how
its own restated facts are trained on ("restated facts plus hyperparameters", REFERENCE 1).

The policy writes its facts one per line, then one final line such as

    Training: lr=1e-3, epochs=4, passage=yes

`lr` is the inner loop's learning rate, `epochs` its passes over the documents, `passage` whether the
passage itself is appended as one more document. The allowed values are `DirectiveConfig`'s
(`self_edit.directive.*`), and the prompt shows them (`prompt_fields` fills the template's
`{directive_syntax}`, `{directive_values}` and `{directive_example}`).

The line is schema-checked as ARC's JSON self-edit is (`seal.domains.arc.self_edit.parse_edit`):
key=value pairs separated by commas (spaces or semicolons also separate), exactly the known keys, each
once; key names and yes/no are case-insensitive, list or heading markers ("-", "1.", "###") and ** around
the line are ignored. Numbers are plain ASCII decimals ("1e-3", "0.002", "4"): digit separators
("1_0e-4") and non-ASCII digits are invalid, though Python's float() and int() would take them. A
value outside the allowed values is invalid, never clamped: a clamped value would train with a setting
the policy did not write, and ReST-EM would then clone a directive whose text says something else.

The allowed values and the defaults meet the run's inner loop in `DirectiveConfig.for_run` (the
knowledge task calls it with inner_loop.lr, inner_loop.epochs and self_edit.append_passage):
`epochs_max: null` becomes inner_loop.epochs, so a directive never trains longer than the facts-only
run, and null defaults become the run's own settings. The prompt's example directive is the defaults,
so a policy that copies it trains exactly as its facts-only twin.

An invalid directive (no directive line, more than one, not the last line, an unparsable pair, an
unknown, repeated or missing key, a value that is not a number / whole number / yes or no, or one
outside the allowed values) is recorded with `valid=false` and a reason naming the key and value. Then
`on_invalid=default` trains with the defaults as a whole (a partly valid directive keeps none of its
values, so an invalid directive has no effect and the run equals the facts-only format), and
`on_invalid=refuse` makes the self-edit unusable: `enforce` raises `SelfEditError`, recorded as skipped.
Lines starting with "Training:" are never facts: the facts part drops them whether valid or not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from seal.domains.knowledge.errors import SelfEditError

# formats whose self-edit carries a training directive, and where: implications-hp ends in it (the model
# writes it), implications-hp-first starts with it (constrained decoding: seal.domains.knowledge.directive_decoding)
DIRECTIVE_POSITION = {"implications-hp": "last", "implications-hp-first": "first"}
DIRECTIVE_FORMATS = tuple(DIRECTIVE_POSITION)
KEYS = ("lr", "epochs", "passage")
LrMode = Literal["choices", "range"]
LR_MODES = get_args(LrMode)
OnInvalid = Literal["default", "refuse"]
ON_INVALID = get_args(OnInvalid)
REFUSED = "invalid training directive (self_edit.directive.on_invalid=refuse): "

_LINE = re.compile(r"^\s*(?:[-*\u2022>#]+\s*|\(?\d{1,3}[.)]\s*)?training\s*:(.*)$", re.IGNORECASE | re.DOTALL)
_SEPARATOR = re.compile(r"\s*[,;]\s*|\s+(?=[A-Za-z_]+\s*=)")
_PAIR = re.compile(r"([A-Za-z_]+)\s*=\s*(\S+)")
_YES, _NO = ("yes", "true"), ("no", "false")
# plain ASCII decimals only: float() and int() also take "1_0e-4", "١e-3" or "٤", which no prompt shows
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class DirectiveConfig:
    """What a training directive may choose (`self_edit.directive.*`, used by format implications-hp)."""
    lr_mode: LrMode = "choices"  # choices: lr must be one of lr_values | range: lr_values is [min, max]
    # around inner_loop.lr=2e-3 for SmolLM2-135M, inside the paper's search range (1e-4 to 2e-3, a bit above)
    lr_values: list[float] = field(default_factory=lambda: [5e-4, 1e-3, 2e-3, 3e-3])
    epochs_min: int = 1
    # null: inner_loop.epochs (`for_run`), so a directive never costs more inner-loop steps than the
    # facts-only run; a number allows that many (more than inner_loop.epochs: a directive may cost more)
    epochs_max: int | None = None
    allow_passage: bool = True  # the policy may choose passage=yes|no (false: the key `passage` is refused)
    on_invalid: OnInvalid = "default"  # default: an invalid directive trains with the defaults | refuse: edit unusable
    # the settings of an invalid directive (and of `passage` when it may not be chosen); null: the run's own
    default_lr: float | None = None  # null: inner_loop.lr
    default_epochs: int | None = None  # null: inner_loop.epochs
    default_passage: bool | None = None  # null: self_edit.append_passage

    def keys(self) -> tuple[str, ...]:
        return KEYS if self.allow_passage else KEYS[:2]

    def for_run(self, lr: float, epochs: int, append_passage: bool) -> DirectiveConfig:
        """This config with every null the run decides filled in: epochs_max (null: `epochs`, the run's
        inner_loop.epochs) and the defaults (null: the run's inner_loop.lr, .epochs, self_edit.append_passage)."""
        return replace(self, epochs_max=epochs if self.epochs_max is None else self.epochs_max,
                       default_lr=lr if self.default_lr is None else self.default_lr,
                       default_epochs=epochs if self.default_epochs is None else self.default_epochs,
                       default_passage=append_passage if self.default_passage is None else self.default_passage)

    def is_for_run(self) -> bool:
        return None not in (self.epochs_max, self.default_lr, self.default_epochs, self.default_passage)


def for_run(se_cfg, lr: float, epochs: int):
    """A self-edit config (`SelfEditConfig`) whose directive is resolved against the run's inner loop
    (`DirectiveConfig.for_run`, with the config's own append_passage)."""
    return replace(se_cfg, directive=se_cfg.directive.for_run(lr, epochs, se_cfg.append_passage))


def with_run_defaults(cfg: DirectiveConfig) -> DirectiveConfig:
    """A config not resolved against a run (`for_run`) is shown and bounded with the inner loop's
    dataclass defaults and the passage appended (the knowledge task always resolves it first)."""
    if cfg.is_for_run():
        return cfg
    from seal.inner_loop.trainer import InnerLoopConfig

    il = InnerLoopConfig()
    return cfg.for_run(il.lr, il.epochs, True)


@dataclass(frozen=True)
class Directive:
    """The settings one self-edit trains with. lr, epochs or append_passage None: the run's own setting
    (`resolved` fills them in); `reason` says why an invalid directive was not followed."""
    lr: float | None
    epochs: int | None
    append_passage: bool | None
    valid: bool
    reason: str | None = None

    def resolved(self, lr: float, epochs: int, append_passage: bool) -> Directive:
        return replace(self, lr=lr if self.lr is None else self.lr,
                       epochs=epochs if self.epochs is None else self.epochs,
                       append_passage=append_passage if self.append_passage is None else self.append_passage)

    def to_record(self) -> dict:
        return {"lr": self.lr, "epochs": self.epochs, "append_passage": self.append_passage, "valid": self.valid,
                "reason": self.reason}


def check_directive_config(cfg: DirectiveConfig) -> None:
    """The directive settings a run cannot start with; raises SelfEditError naming the key."""
    where = "self_edit.directive"
    if cfg.lr_mode not in LR_MODES:
        raise SelfEditError(f"{where}.lr_mode: '{cfg.lr_mode}' is not one of {', '.join(LR_MODES)}")
    vals = list(cfg.lr_values)
    if not vals or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in vals):
        raise SelfEditError(f"{where}.lr_values: needs positive finite learning rates, got {vals}")
    if cfg.lr_mode == "range" and (len(vals) != 2 or vals[0] > vals[1]):
        raise SelfEditError(f"{where}.lr_values: lr_mode=range needs [min, max] with min <= max, got {vals}")
    if cfg.epochs_min < 1 or (cfg.epochs_max is not None and cfg.epochs_min > cfg.epochs_max):
        raise SelfEditError(f"{where}: needs 1 <= epochs_min <= epochs_max, got {cfg.epochs_min} and {cfg.epochs_max} "
                            "(epochs_max: null means inner_loop.epochs)")
    if cfg.on_invalid not in ON_INVALID:
        raise SelfEditError(f"{where}.on_invalid: '{cfg.on_invalid}' is not one of {', '.join(ON_INVALID)}")
    if cfg.default_lr is not None and not (math.isfinite(cfg.default_lr) and cfg.default_lr > 0):
        raise SelfEditError(f"{where}.default_lr: must be a positive number or null, got {cfg.default_lr}")
    if cfg.default_epochs is not None and cfg.default_epochs < 1:
        raise SelfEditError(f"{where}.default_epochs: must be at least 1 or null, got {cfg.default_epochs}")


def format_lr(v: float) -> str:
    """A learning rate as the prompt writes it: 0.001 -> 1e-3, 0.00025 -> 2.5e-4."""
    mantissa, exponent = f"{v:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def example_values(cfg: DirectiveConfig) -> tuple[float, int, bool | None]:
    """The prompt's example directive: the defaults (an invalid directive's settings; for a config
    resolved by `for_run`, the run's own inner_loop.lr, .epochs and self_edit.append_passage), so a
    policy that copies the example trains as the facts-only run does. A default the policy may not
    write is replaced by the nearest allowed value (lr: on a log scale), so the example stays valid.
    passage: None when the policy may not choose it."""
    cfg = with_run_defaults(cfg)
    lr, epochs = float(cfg.default_lr), int(cfg.default_epochs)  # type: ignore[arg-type]
    if cfg.lr_mode == "choices":
        lr = min(cfg.lr_values, key=lambda v: (abs(math.log(v / lr)), v))
    else:
        lr = min(max(lr, cfg.lr_values[0]), cfg.lr_values[1])
    epochs = min(max(epochs, cfg.epochs_min), cfg.epochs_max)  # type: ignore[type-var]
    return float(lr), epochs, (cfg.default_passage if cfg.allow_passage else None)


def prompt_fields(cfg: DirectiveConfig) -> dict[str, str]:
    """The template's directive placeholders, filled from the allowed values: the line's syntax, what
    each value may be, and a valid example (`example_values`: the defaults)."""
    cfg = with_run_defaults(cfg)
    if cfg.lr_mode == "choices":
        lr_text = f"X is the learning rate, one of {_or([format_lr(v) for v in cfg.lr_values])}"
    else:
        lo, hi = cfg.lr_values
        lr_text = f"X is the learning rate, a number from {format_lr(lo)} to {format_lr(hi)}"
    values = [lr_text, (f"N is how many times you are trained on your statements, a whole number from "
                        f"{cfg.epochs_min} to {cfg.epochs_max}")]
    lr, epochs, passage = example_values(cfg)
    syntax, example = "lr=X, epochs=N", f"lr={format_lr(lr)}, epochs={epochs}"
    if cfg.allow_passage:
        values.append("P is yes or no: whether you are also trained on the passage itself")
        syntax, example = syntax + ", passage=P", example + f", passage={'yes' if passage else 'no'}"
    return {"directive_syntax": syntax, "directive_values": "; ".join(values), "directive_example": example}


def is_directive_line(line: str) -> bool:
    return bool(_LINE.match(_plain(line)))


def _plain(line: str) -> str:
    return line.replace("**", "").replace("`", "").strip()


def parse_directive(completion: str, cfg: DirectiveConfig, position: str = "last") -> tuple[str, Directive]:
    """The facts part of a self-edit (every line but those starting with "Training:") and its directive,
    which must be the `position` ("last" or "first") written line (first: later "Training:" lines are
    dropped from the facts but do not count as directives): the chosen settings, or, when invalid,
    the defaults with valid=False and the reason. Never raises for a bad directive (`enforce` applies
    on_invalid=refuse)."""
    lines = completion.splitlines()
    at = [i for i, ln in enumerate(lines) if is_directive_line(ln)]
    facts = "\n".join(ln for i, ln in enumerate(lines) if i not in at)
    written = [i for i, ln in enumerate(lines) if ln.strip()]
    if not at:
        return facts, fallback(cfg, f"missing directive line: no line starts with 'Training:' (it must be the "
                                    f"{position} line)")
    if position == "first":
        if written[0] not in at:
            return facts, fallback(cfg, f"not the first line: the first of {len(written)} lines does not start with "
                                        "'Training:' (it must be the first line)")
        at = at[:1]  # later lines that start with "Training:" are statements' text: dropped, not directives
    if len(at) > 1:
        return facts, fallback(cfg, f"several directive lines: {len(at)} lines start with 'Training:' (write one)")
    if at[0] != written[-1 if position == "last" else 0]:
        return facts, fallback(cfg, f"not the {position} line: the directive is line {written.index(at[0]) + 1} of "
                                    f"{len(written)} (it must be the {position} line)")
    body = _LINE.match(_plain(lines[at[0]]))[1].strip().rstrip(".").strip()  # type: ignore[index]
    problems, values = read_pairs(body, cfg)
    if problems:
        return facts, fallback(cfg, "; ".join(problems))
    passage = values["passage"] if cfg.allow_passage else cfg.default_passage
    return facts, Directive(lr=values["lr"], epochs=values["epochs"], append_passage=passage, valid=True)


def fallback(cfg: DirectiveConfig, reason: str) -> Directive:
    return Directive(lr=cfg.default_lr, epochs=cfg.default_epochs, append_passage=cfg.default_passage, valid=False,
                     reason=reason)


def read_pairs(body: str, cfg: DirectiveConfig) -> tuple[list[str], dict]:
    """The problems of a directive line's key=value text (after "Training:"), and its values when there are none."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for item in (s for s in _SEPARATOR.split(body) if s):
        m = _PAIR.fullmatch(item)
        if not m:
            problems.append(f"unparsable: {item!r} is not key=value")
            continue
        key, value = m[1].lower(), m[2].strip("'\"")
        if key == "passage" and not cfg.allow_passage:
            problems.append(f"passage: not allowed in this run (self_edit.directive.allow_passage=false), got "
                            f"passage={value}")
        elif key not in cfg.keys():
            problems.append(f"unknown key: {key}={value} (known keys: {', '.join(cfg.keys())})")
        elif key in seen:
            problems.append(f"duplicate key: {key} (given {seen[key]} and {value})")
        else:
            seen[key] = value
    problems += [f"missing key: {key}" for key in cfg.keys() if key not in seen]
    values = {}
    for key, value in seen.items():
        got, problem = _READERS[key](value, cfg)
        if problem:
            problems.append(f"{key}: {problem}")
        values[key] = got
    return problems, values


def _lr(value: str, cfg: DirectiveConfig) -> tuple[float | None, str | None]:
    if not _NUMBER.fullmatch(value):
        return None, f"{value!r} is not a number"
    lr = float(value)
    if not math.isfinite(lr):
        return None, f"{value} is not a finite number"
    if cfg.lr_mode == "choices":
        match = next((c for c in cfg.lr_values if math.isclose(lr, c, rel_tol=1e-6)), None)
        if match is None:
            return None, f"{value} is not one of {', '.join(format_lr(v) for v in cfg.lr_values)}"
        return float(match), None
    lo, hi = cfg.lr_values
    if not lo <= lr <= hi:
        return None, f"{value} is outside [{format_lr(lo)}, {format_lr(hi)}]"
    return lr, None


def _epochs(value: str, cfg: DirectiveConfig) -> tuple[int | None, str | None]:
    if not _WHOLE.fullmatch(value):
        return None, f"{value!r} is not a whole number"
    n, hi = int(value), with_run_defaults(cfg).epochs_max
    if not cfg.epochs_min <= n <= hi:  # type: ignore[operator]
        return None, f"{n} is outside [{cfg.epochs_min}, {hi}]"
    return n, None


def _passage(value: str, cfg: DirectiveConfig) -> tuple[bool | None, str | None]:
    if value.lower() in _YES:
        return True, None
    if value.lower() in _NO:
        return False, None
    return None, f"{value!r} is not yes or no"


_READERS: dict[str, Callable[[str, DirectiveConfig], tuple]] = {"lr": _lr, "epochs": _epochs, "passage": _passage}


def enforce(d: Directive, cfg: DirectiveConfig) -> None:
    """on_invalid=refuse: an invalid directive makes the self-edit unusable (SelfEditError with the reason)."""
    if not d.valid and cfg.on_invalid == "refuse":
        raise SelfEditError(REFUSED + (d.reason or "invalid"))


# ------------------------------------------------------------------------------ statistics

def _counts(values: Iterable, order: Callable = str) -> dict[str, int]:
    c = Counter(values)
    return {str(k): n for k, n in sorted(c.items(), key=lambda kv: order(kv[0]))}


def setting(d: dict) -> str:
    """One applied directive (a record's `directive`) as text: "lr=1e-3, epochs=4, passage=yes"."""
    lr = "—" if d.get("lr") is None else format_lr(d["lr"])
    passage = "—" if d.get("append_passage") is None else ("yes" if d["append_passage"] else "no")
    return f"lr={lr}, epochs={d.get('epochs', '—')}, passage={passage}"


def directive_stats(records: Iterable[dict]) -> dict:
    """Over inner-loop records (one per self-edit) that carry a `directive`: how many directives were
    valid, the settings the valid ones chose (lr, epochs, passage), and what became of the invalid ones:
    trained with the defaults (fell back, with the settings that gave), refused (on_invalid=refuse), or
    skipped for another reason before or during training (an empty completion, too long, NaN loss ...),
    so n_valid + n_fallback + n_refused + n_skipped == n; and how often each kind of problem occurred,
    most frequent first, ties by name (the same order whatever order the records came in)."""
    recs = [r for r in records if isinstance(r.get("directive"), dict)]
    valid = [r["directive"] for r in recs if r["directive"]["valid"]]
    invalid = [r for r in recs if not r["directive"]["valid"]]
    refused = [r for r in invalid if str(r.get("skipped", "")).startswith(REFUSED)]
    fell_back = [r["directive"] for r in invalid if "skipped" not in r]
    skipped = [r for r in invalid if "skipped" in r and not str(r["skipped"]).startswith(REFUSED)]
    kinds = Counter(p.split(":", 1)[0] for r in invalid for p in (r["directive"]["reason"] or "").split("; "))
    return {
        "n": len(recs), "n_valid": len(valid), "share_valid": len(valid) / len(recs) if recs else None,
        "chosen": {"lr": _counts((format_lr(d["lr"]) for d in valid), order=float),
                   "epochs": _counts((d["epochs"] for d in valid), order=int),
                   "passage": _counts("yes" if d["append_passage"] else "no" for d in valid)},
        "n_fallback": len(fell_back), "fallback": _counts(setting(d) for d in fell_back),
        "n_refused": len(refused), "n_skipped": len(skipped),
        "problems": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
