"""Scoped memory (`chat.memory=scoped`): every learned content keeps its own LoRA adapter, trained on the
base model, and the adapter takes part in a forward pass only for input rows that name the content's
people, places or things. A question about anything else runs on the base weights, so general answers
cannot be damaged and other subjects cannot pick up the new names; earlier contents are not overwritten
by later ones because no two share an adapter. This is the scope-routing idea of SERAC (a scope check
decides whether the edit applies), GRACE (a codebook of edits keyed on the input) and WISE (a side memory
with a router), with the scope read from the input's text instead of a learned classifier.

What routing cannot do: a question about the content that names none of its names ("who keeps a tame
fox?") runs on the base model; a question that names a learned name ("what river runs through Paris?",
after learning a fact about Paris) gets that content's adapter, whatever it asks. The gate measures both
(reliability of the probes, locality of the general questions) through the same routing.

The routing is decided once per forward whose input is a whole prompt (a prefill: more than one token, or
an empty cache) from the decoded text of each row, and kept for the decoding steps of the same generation
(the same cache object), so every caller — `generate`, batched greedy answers, likelihood scoring — is
routed the same way without knowing. Two consequences: a likelihood forward of prompt + answer is routed on
both (the learner therefore keeps only probes whose prompt names the scope), and a prompt added after a
cache of another prompt is routed on what it adds. The adapters live on the device of the model's first
parameter: a model spread over several devices (`device_map`) is not supported."""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Scoped:
    """One learned content's adapter: its version, the names that bring it in, and per layer (A, B)."""
    version: str
    names: list[str]
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float

    def __post_init__(self):
        self.pattern = name_pattern(self.names)

    def applies_to(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(text) is not None


def name_pattern(names: list[str]) -> re.Pattern | None:
    """Any of `names` as whole words, case as written ("Wren" the ferry, not "wren" the bird); None for no names."""
    names = sorted({n for n in names if n.strip()}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)") if names else None


QUOTES = "\"'‘’“”"


def scope_names(content: str, tok, template: str = "") -> list[str]:
    """The names whose mention brings a content's adapter in: its capitalised names (`content_names`) without
    leading everyday words ("Yesterday Orin Tallow" -> "Orin Tallow"), and a lone word opening a sentence that
    the tokenizer does not hold as an everyday word ("Pellburn is the capital of Korrasund." -> Korrasund and
    Pellburn; "Every town has a mayor.", "Interestingly, ..." -> nothing). A name that `template` (the prompt
    of an empty conversation: the chat template's own system text) holds would bring the adapter into every
    prompt, so it does not count ("AI" of "an AI lab", under SmolLM2's "a helpful AI assistant")."""
    from seal.chat.edit_gate import content_names, sentences
    from seal.eval.edit_bleed import common_words, name_spans

    common, names, lines = common_words(tok), [], sentences(content)
    openers = {s.split()[0].strip(QUOTES + ".,;:!?") for s in lines}
    for name in content_names(content):
        words = name.strip(QUOTES).split()
        # "Yesterday Orin Tallow sold ...": an everyday word opening the sentence is not part of the name
        if len(words) > 1 and words[0] in openers and common(words[0]):
            words.pop(0)
        names.append(" ".join(words))
    for sentence in lines:
        words, spans = sentence.split(), name_spans(sentence)
        first = words[0].strip(QUOTES + ".,;:!?") if words else ""
        # a lone name opening the sentence ("Fennick" of "Fennick Oaths built ..." is not; nor is "Who")
        if spans and spans[0] == first and not words[0].endswith((",", ";", ":")) and not common(first):
            names.append(first)
    in_template = name_pattern(names)
    found = set(in_template.findall(template)) if in_template is not None and template else set()
    return [n for n in dict.fromkeys(names) if n and n not in found]


def split_layers(tensors: dict[str, torch.Tensor], device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """PEFT-named adapter tensors (`<layer>.lora_A.weight`, `<layer>.lora_B.weight`) -> layer -> (A, B), fp32."""
    out = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            name = key[: -len(".lora_A.weight")]
            b = tensors[f"{name}.lora_B.weight"]
            out[name] = (a.to(device=device, dtype=torch.float32), b.to(device=device, dtype=torch.float32))
    return out


class ScopedMemory:
    """The scoped adapters of one model, applied through forward hooks; see the module docstring."""

    def __init__(self, model: nn.Module, tok):
        self.model, self.tok = model, tok
        self.entries: list[Scoped] = []
        self.enabled = True
        self._rows: list[list[int]] | None = None  # per batch row: indices of the entries that apply
        self._index: dict[int, torch.Tensor] = {}  # entry index -> the rows it applies to, on the model's device
        self._cache = None  # the generation cache the routing was decided for
        self._modules = dict(model.named_modules())
        self._device = next(model.parameters()).device
        self._hooked: dict[str, object] = {}
        self._pre = model.register_forward_pre_hook(self._route, with_kwargs=True)

    # ------------------------------------------------------------------ entries

    def add(self, version: str, names: list[str], tensors: dict[str, torch.Tensor], scale: float) -> Scoped:
        entry = Scoped(version, list(names), split_layers(tensors, self._device), scale)
        for name in entry.layers:
            if name not in self._modules:
                raise ValueError(f"scoped adapter {version}: layer '{name}' is not in the model")
            if name not in self._hooked:
                self._hooked[name] = self._modules[name].register_forward_hook(self._hook(name))
        self.entries.append(entry)
        self._rows = None
        return entry

    def remove(self, entry: Scoped) -> None:
        self.entries = [e for e in self.entries if e is not entry]
        self._rows = None

    def clear(self) -> None:
        self.entries, self._rows = [], None

    def versions(self) -> list[str]:
        return [e.version for e in self.entries]

    def scope(self, text: str) -> list[str]:
        """The versions whose adapters a prompt with this text is answered with."""
        return [e.version for e in self.entries if e.applies_to(text)]

    @contextmanager
    def off(self):
        """The base weights for every row inside this block (training and writing probes and self-edits)."""
        was, self.enabled, self._rows = self.enabled, False, None
        try:
            yield
        finally:
            self.enabled, self._rows = was, None

    def close(self) -> None:
        self._pre.remove()
        for h in self._hooked.values():
            h.remove()
        self._hooked, self.entries = {}, []

    # ------------------------------------------------------------------ hooks

    def _route(self, module, args, kwargs):
        if not self.enabled or not self.entries:
            self._rows = None
            return None
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            self._rows = None
            return None
        cache = next((kwargs[k] for k in ("cache", "past_key_values") if kwargs.get(k) is not None), None)
        cached = cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0
        if (self._rows is not None and cached and cache is self._cache and ids.shape[1] == 1
                and len(self._rows) == ids.shape[0]):
            return None  # a decoding step of the same generation: keep its prefill's routing
        # a prefill (a prompt given after a cache of another prompt is routed on what it adds)
        texts = self.tok.batch_decode(ids.tolist(), skip_special_tokens=True)
        rows = [[i for i, e in enumerate(self.entries) if e.applies_to(t)] for t in texts]
        self._rows, self._cache = rows, cache
        self._index = {i: torch.tensor([r for r, active in enumerate(rows) if i in active], device=self._device)
                       for i in {i for active in rows for i in active}}  # built once per prompt, not per layer
        return None

    def _hook(self, name: str):
        def hook(module, inputs, output):
            rows = self._rows
            if not self.enabled or not rows or not any(rows) or len(rows) != output.shape[0]:
                return output
            x = inputs[0]
            for i, idx in self._index.items():
                e = self.entries[i]
                if name in e.layers:
                    a, b = e.layers[name]
                    delta = ((x[idx].to(torch.float32) @ a.T) @ b.T) * e.scale
                    output = output.index_add(0, idx, delta.to(output.dtype))
            return output
        return hook
