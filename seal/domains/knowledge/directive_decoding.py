"""Format `implications-hp-first`: the training directive is the self-edit's first line, and the policy
writes it by constrained decoding, so every directive it writes is valid.

A small model asked to end its statements with `Training: lr=..., epochs=..., passage=...` almost never
does (SmolLM2-135M: 0 valid of 68 in `experiments/ki_restem_hp_smollm2`; most completions run out of
tokens first, and asked to put the line first it still did not, 0 of 16), so ReST-EM has no directive to
clone and learns nothing about the settings. Here the policy still chooses the settings, with its own
probabilities, but only among the allowed lines (`directive_lines`, every combination of the allowed
values): sampling with the self-edit's temperature and top_p, each token restricted to those that continue
an allowed line, its closing newline included (transformers' `prefix_allowed_tokens_fn`, over a token
trie of the lines; EOS only stops the call once a line is whole). The statements are then sampled after
the chosen line by whatever generation backend the run uses (the line is part of the prompt text). The
completion is the line, its newline and the statements; its token ids are the line's ids as
constrained-sampled followed by the statements' ids, so the M-step clones both parts and the policy's
preference among settings moves with the selection. The statements get `self_edit.max_new_tokens` of
their own, as the facts-only format's facts do; the line (about 17 tokens) comes on top.

A prompt that does not end in whitespace (a base model's raw prompt, `model.chat=false`) gets a newline
before the line, which is then part of the completion. The line's tokens are those of the line tokenized
on its own; `choose_directives` checks, per prompt, that the prompt text with the line appended tokenizes
to the prompt's ids followed by the line's (what the statements are sampled after, and what the M-step
trains on), and stops with the tokenizer named when it does not.
"""

from __future__ import annotations

from seal.domains.knowledge.directive import DirectiveConfig, format_lr, with_run_defaults
from seal.domains.knowledge.errors import SelfEditError
from seal.generation.hf import HFGenerator, SamplingConfig, eos_set
from seal.models.loading import prompt_ids

FIRST = "implications-hp-first"
MAX_LINES = 10_000


def directive_lines(cfg: DirectiveConfig) -> list[str]:
    """Every directive line the config allows, in a fixed order (lr, then epochs, then passage)."""
    cfg = with_run_defaults(cfg)
    if cfg.lr_mode != "choices":
        raise SelfEditError(f"self_edit.format={FIRST} chooses among listed values: it needs "
                            f"self_edit.directive.lr_mode=choices, got {cfg.lr_mode}")
    epochs = range(cfg.epochs_min, int(cfg.epochs_max) + 1)  # type: ignore[arg-type]
    passages = ("yes", "no") if cfg.allow_passage else (None,)
    lines = [f"Training: lr={format_lr(lr)}, epochs={e}" + ("" if p is None else f", passage={p}")
             for lr in cfg.lr_values for e in epochs for p in passages]
    if len(lines) > MAX_LINES:
        raise SelfEditError(f"self_edit.directive allows {len(lines)} directive lines; {FIRST} decodes at most "
                            f"{MAX_LINES} (fewer lr_values or a smaller epochs range)")
    return lines


class Trie:
    """The token paths of the allowed lines: which tokens may follow a prefix, and which prefixes are whole."""

    def __init__(self, paths: list[list[int]], end: int):
        following: dict[tuple[int, ...], set[int]] = {}
        for path in paths:
            for i in range(len(path)):
                following.setdefault(tuple(path[:i]), set()).add(path[i])
            following.setdefault(tuple(path), set()).add(end)
        self.next = {prefix: sorted(ids) for prefix, ids in following.items()}  # sorted once, asked per token
        self.end = [end]

    def allowed(self, prefix: tuple[int, ...]) -> list[int]:
        # a prefix outside the trie cannot happen under the constraint; after a whole line, only the end
        return self.next.get(prefix, self.end)


def separator(prompt: str) -> str:
    """What goes between a prompt and its directive line: nothing after whitespace (a chat template's
    assistant header ends in a newline), else a newline."""
    return "" if prompt[-1:].isspace() else "\n"


def line_paths(tok, pieces: list[str]) -> list[list[int]]:
    """The token ids of each piece (separator, line, newline), tokenized on its own."""
    paths = [tok(piece, add_special_tokens=False)["input_ids"] for piece in pieces]
    if len({tuple(p) for p in paths}) != len(paths):
        raise SelfEditError("two allowed directive lines tokenize alike; the directive cannot be decoded")
    return paths


def choose_directives(model, tok, prompts: list[str], cfg: DirectiveConfig, seed: int, temperature: float,
                      top_p: float, batch_size: int) -> list[tuple[str, list[int]]]:
    """For each formatted prompt, one allowed directive line sampled from the model restricted to the
    allowed lines: (the text to append to the prompt, separator + line + newline, and its token ids).
    Seeded, so the same (prompts, seed) gives the same lines."""
    lines = directive_lines(cfg)
    out: list[tuple[str, list[int]] | None] = [None] * len(prompts)
    for sep in sorted({separator(p) for p in prompts}):
        which = [i for i, p in enumerate(prompts) if separator(p) == sep]
        pieces = [f"{sep}{line}\n" for line in lines]
        for i, got in zip(which, _choose(model, tok, [prompts[i] for i in which], pieces, seed, temperature, top_p,
                                         batch_size)):
            out[i] = got
    return out  # type: ignore[return-value]


def _choose(model, tok, prompts: list[str], pieces: list[str], seed: int, temperature: float, top_p: float,
            batch_size: int) -> list[tuple[str, list[int]]]:
    paths = line_paths(tok, pieces)
    by_path = {tuple(p): piece for p, piece in zip(paths, pieces)}
    eos = eos_set(model, tok)
    trie = Trie(paths, min(eos))
    sampling = SamplingConfig(max_new_tokens=max(len(p) for p in paths) + 1, temperature=temperature, top_p=top_p,
                              batch_size=batch_size)
    got = HFGenerator(model, tok).generate(prompts, sampling, seed=seed, with_ids=True, allowed_tokens=trie.allowed)
    out = []
    for prompt, (_, ids) in zip(prompts, got):
        path = tuple(ids[:-1] if ids and ids[-1] in eos else ids)
        if path not in by_path:
            raise RuntimeError(f"constrained decoding left the allowed directive lines: {ids}")
        piece = by_path[path]
        if prompt_ids(tok, prompt + piece) != prompt_ids(tok, prompt) + list(path):
            raise SelfEditError(f"format {FIRST}: tokenizer {type(tok).__name__} merges the end of the prompt "
                                f"with the directive line {piece.strip()!r}, so the line's tokens would not be "
                                "the ones the statements follow; use another format with this model")
        out.append((piece, list(path)))
    return out
