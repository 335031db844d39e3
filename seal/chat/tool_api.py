"""A made-up tool API for the "learn tool use while chatting" case study.

A small model is shown a handful (10 / 50 / 100) of user requests paired with the tool call that
serves them, and is then scored on held-out requests. That only measures learning if the model
cannot already know the API, so everything here is invented: six tools of the research station on
Quell, a fictional moon, with nonsense names, made-up argument vocabularies and our own wording.

- `TOOLS` / `api_docs(tools)`: the API and a compact documentation block for a system prompt.
- `make_examples(n, seed, split)`: requests filled from several phrasings per tool, balanced across
  tools, deterministic in `seed`. Every possible call of a tool is assigned to `train` or `test` by
  a hash of its canonical text, so the two splits never share a call (templates are shared).
- `format_call(tool, args)`: the canonical call, e.g. `vrell_dock(bay=3, craft="Osk-Tarin")`.
- `parse_call(text)`: the first call in free-form model output, via `ast` only (never eval/exec).
- `score_call(output, example)`: parsed / right tool / exact match. Standard library only.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import random
import re
from dataclasses import dataclass

SPLITS = ("train", "test")
TEST_EVERY = 4  # about one call in TEST_EVERY is held out


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # "int", "str" (open vocabulary, made-up values) or "enum" (fixed listed choices)
    desc: str
    choices: tuple[str, ...] = ()  # values for "str" and "enum"
    lo: int = 0  # inclusive range for "int"
    hi: int = 0

    def values(self) -> list:
        return list(range(self.lo, self.hi + 1)) if self.kind == "int" else list(self.choices)

    def signature(self) -> str:
        if self.kind == "int":
            return f"{self.name}: int {self.lo}-{self.hi}"
        if self.kind == "enum":
            return f"{self.name}: " + " | ".join(f'"{c}"' for c in self.choices)
        return f"{self.name}: str"


@dataclass(frozen=True)
class Tool:
    name: str
    desc: str
    args: tuple[Arg, ...]
    templates: tuple[str, ...]  # requests with {arg_name} placeholders


@dataclass
class ToolExample:
    request: str
    call: str
    tool: str
    args: dict


CRAFTS = ("Osk-Tarin", "Mirel Vash", "Qoru-7", "Tessaly Dun", "Brakk Horn", "Ulmo Pell", "Zenna-Ri", "Kest Varo")
SECTORS = ("Drossmere", "Ykhal Flats", "Pellucid Rim", "Varnholt", "Seska Basin", "Orrin Gulch")
CREW = ("Ilvi Marro", "Tobek Quan", "Saressa Holm", "Drun Affel", "Yemi Corvath", "Halvik Oon", "Nessa Pryle",
        "Joro Venk")
MODULES = ("Cradle", "Spindle", "Lantern", "Hollow", "Burrow", "Vestry")
SPECIMENS = ("glassmoth", "vetchling", "pale lurrow", "skarn beetle", "driftcap", "cinder tuft", "hollowfern",
             "nix spore")

TOOLS: tuple[Tool, ...] = (
    Tool("vrell_dock", "Assign a docking bay to an arriving craft.",
         (Arg("bay", "int", "docking bay number", lo=1, hi=12),
          Arg("craft", "str", "call sign of the arriving craft", CRAFTS)),
         ("Please put the {craft} in bay {bay}.", "The {craft} is coming in, give it docking bay {bay}.",
          "Dock {craft} at bay {bay}.", "Can you clear bay {bay} for the {craft}?",
          "Bay {bay} should take the {craft} when it lands.")),
    Tool("glimber_scan", "Run a ground-penetrating scan of a surface sector.",
         (Arg("sector", "str", "name of the surface sector", SECTORS),
          Arg("depth", "int", "scan depth in metres", lo=1, hi=40)),
         ("Scan {sector} down to {depth} metres.", "I need a ground scan of {sector}, {depth} m deep.",
          "Could you probe {depth} metres under {sector}?", "Run the deep scanner over {sector} at depth {depth}.",
          "What's under {sector}? Check the first {depth} metres.")),
    Tool("pashk_ration", "Issue ration packs of one kind to a crew member.",
         (Arg("crew", "str", "full name of the crew member", CREW),
          Arg("packs", "int", "number of packs", lo=2, hi=9),
          Arg("kind", "enum", "ration type", ("brine", "spore", "husk"))),
         ("Give {crew} {packs} {kind} packs.", "{crew} needs {packs} packs of {kind} rations.",
          "Issue {packs} {kind} rations to {crew}, please.", "Hand out {kind} rations to {crew}: {packs} packs.",
          "Can {crew} have {packs} packs of {kind}?", "Log {packs} {kind} ration packs for {crew}.")),
    Tool("thrummel_vent", "Set the air-vent flow level of a habitat module.",
         (Arg("module", "str", "habitat module name", MODULES),
          Arg("level", "int", "flow level in percent", lo=5, hi=95)),
         ("Set the vents in {module} to {level} percent.", "It's stuffy in {module}, put the airflow at {level}%.",
          "Change {module} ventilation to level {level}.", "Vent flow for {module} should be {level}.",
          "Could you run the {module} vents at {level} percent?")),
    Tool("ostrik_relay", "Broadcast a standard alert on a relay channel.",
         (Arg("channel", "int", "relay channel", lo=1, hi=64),
          Arg("alert", "enum", "standard alert", ("all-clear", "dust-warning", "return-to-base", "hold-position"))),
         ("Broadcast {alert} on channel {channel}.", "Send a {alert} alert over relay {channel}.",
          "Everyone on channel {channel} needs to hear {alert}.",
          "Put out the {alert} signal on relay channel {channel}.")),
    Tool("quindle_log", "File a collected specimen into a numbered storage jar.",
         (Arg("specimen", "str", "specimen name", SPECIMENS),
          Arg("jar", "int", "storage jar number", lo=1, hi=30)),
         ("Store the {specimen} in jar {jar}.", "I found a {specimen}; file it under jar {jar}.",
          "Jar {jar} gets the {specimen} sample.", "Log this {specimen} into storage jar {jar}, please.",
          "Put the {specimen} we collected in jar number {jar}.")),
)
TOOLS_BY_NAME = {t.name: t for t in TOOLS}


def api_docs(tools=TOOLS) -> str:
    """Signature, description and argument notes for each tool, one block per tool."""
    blocks = []
    for t in tools:
        lines = [f"{t.name}({', '.join(a.signature() for a in t.args)}) - {t.desc}"]
        lines += [f"    {a.name}: {a.desc}" for a in t.args]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def format_call(tool: str, args: dict, tools=TOOLS) -> str:
    """Canonical call: args in declared order (unknown ones after, sorted), strings double-quoted."""
    spec = {t.name: t for t in tools}.get(tool)
    order = [a.name for a in spec.args if a.name in args] if spec else []
    order += sorted(k for k in args if k not in order)
    parts = [f'{k}="{args[k]}"' if isinstance(args[k], str) else f"{k}={args[k]}" for k in order]
    return f"{tool}({', '.join(parts)})"


def split_of(tool: str, args: dict) -> str:
    """`train` or `test`, fixed for a call by a hash of its canonical text (not of the seed)."""
    digest = hashlib.sha256(format_call(tool, args).encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_EVERY == 0 else "train"


def _calls(tool: Tool, split: str) -> list[dict]:
    names = [a.name for a in tool.args]
    combos = (dict(zip(names, vals)) for vals in itertools.product(*(a.values() for a in tool.args)))
    return [c for c in combos if split_of(tool.name, c) == split]


def make_examples(n: int, seed: int, split: str, tools=TOOLS) -> list[ToolExample]:
    """n examples from `split`, tools round-robin (counts differ by at most one), then shuffled. Per
    tool, calls are drawn without replacement from the split's calls (cycling only if n asks for more
    than exist); each request's phrasing is a random template of its tool."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"tool_api:{seed}:{split}")
    pools = {t.name: rng.sample(calls, len(calls)) for t in tools for calls in [_calls(t, split)]}
    out = []
    for i in range(n):
        t = tools[i % len(tools)]
        pool = pools[t.name]
        args = pool[(i // len(tools)) % len(pool)]
        request = rng.choice(t.templates).format(**args)
        out.append(ToolExample(request, format_call(t.name, args, tools), t.name, dict(args)))
    rng.shuffle(out)
    return out


_CALL_START = re.compile(r"(?<![\w.])[A-Za-z_]\w*\(")


def _close(text: str, start: int) -> int | None:
    """Index just past the parenthesis matching the one at `start`, skipping quoted strings."""
    depth, quote, i = 0, None, start
    while i < len(text):
        c = text[i]
        if quote:
            i += c == "\\"  # skip the escaped character
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "()":
            depth += 1 if c == "(" else -1
            if depth == 0:
                return i + 1
        i += 1
    return None


_BAD = object()


def _literal(node: ast.expr):
    """The value of a str/int/float literal (numbers may be negated), else `_BAD`."""
    negate = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
    node = node.operand if negate else node
    if not isinstance(node, ast.Constant) or type(node.value) not in ((int, float) if negate else (str, int, float)):
        return _BAD
    return -node.value if negate else node.value


def parse_call(text: str) -> tuple[str, dict] | None:
    """(tool, args) of the first call in `text`, or None.

    Candidates are `name(` not preceded by a dot or identifier and not inside brackets of the
    surrounding text; prose that does not parse as Python is skipped. The first candidate that
    parses decides: it is accepted only if it is `name(key=literal, ...)` with str/int/float
    literals, unique keys and nothing chained after it; otherwise the result is None. Parsing is
    `ast.parse` only: nothing is ever evaluated."""
    for m in _CALL_START.finditer(text):
        before = text[: m.start()]
        if sum(before.count(c) for c in "([{") > sum(before.count(c) for c in ")]}"):
            continue  # inside an enclosing expression (lambda, nested call, list, ...)
        end = _close(text, m.end() - 1)
        if end is None:
            return None
        try:
            tree = ast.parse(text[m.start():end], mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if re.match(r"\.[A-Za-z_]|[(\[]", text[end:]):
            return None  # chained: name(...).attr / name(...)(...) / name(...)[...]
        call = tree.body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.args:
            return None
        args = {}
        for kw in call.keywords:
            value = _literal(kw.value)
            if kw.arg is None or kw.arg in args or value is _BAD:
                return None
            args[kw.arg] = value
        return call.func.id, args
    return None


def _same(a, b) -> bool:
    norm = lambda v: " ".join(v.split()) if isinstance(v, str) else v
    return type(a) is type(b) and norm(a) == norm(b)


def score_call(output: str, example: ToolExample) -> dict:
    """parsed: a call was found; tool: its name is right; exact: right tool and the same argument
    set with equal values of the same type (order of arguments and call whitespace don't matter,
    runs of whitespace inside strings are collapsed; "3" for an int argument is wrong)."""
    got = parse_call(output)
    if got is None:
        return {"exact": False, "tool": False, "parsed": False}
    name, args = got
    tool_ok = name == example.tool
    exact = tool_ok and args.keys() == example.args.keys() and all(
        _same(args[k], example.args[k]) for k in args)
    return {"exact": exact, "tool": tool_ok, "parsed": True}
