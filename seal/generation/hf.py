"""Batched text generation behind a small protocol, so a vLLM backend can stand in later.

`HFGenerator` runs transformers' `generate` on the resident model with left padding. Prompts are
sorted by length before batching so each batch pads little, and results come back in input order.
Sampling is seeded per call, so the same (prompts, seed) gives the same texts. With a router
(`seal.inner_loop.multi_lora.MultiLoRA`) each prompt can name its own adapter (`adapters`, -1: the base
model), so the questions of K adapted models are answered in one call. `allowed_tokens` constrains
decoding (each new token among those it allows after the row's tokens so far), through transformers'
`prefix_allowed_tokens_fn`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from tqdm.auto import tqdm

from seal.models.loading import prompt_ids


def length_batches(prompts: list[str], size: int) -> list[list[int]]:
    """Indices of prompts in batches of similar length (little padding); results go back by index."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [order[i:i + size] for i in range(0, len(order), size)]


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    batch_size: int = 16


class Generator(Protocol):
    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int = 0,
                 desc: str | None = None, adapters: list[int] | None = None) -> list[str]: ...


def completion_ids(new: list[int], eos_ids: set[int]) -> list[int]:
    """The tokens a sequence really sampled: up to and including its first EOS (generate pads the
    rest of a finished row, often with the EOS id itself); all of them when it hit the token limit."""
    for i, t in enumerate(new):
        if t in eos_ids:
            return new[: i + 1]
    return new


def eos_set(model, tok) -> set[int]:
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return {e for e in eos + [tok.eos_token_id] if e is not None}


class HFGenerator:
    """Generation with whatever adapter state the wrapped model currently has."""

    def __init__(self, model, tokenizer, router=None):
        self.model = model
        self.tok = tokenizer
        self.router = router

    @torch.inference_mode()
    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int = 0,
                 desc: str | None = None, adapters: list[int] | None = None, with_ids: bool = False,
                 allowed_tokens: Callable[[tuple[int, ...]], list[int]] | None = None) -> list:
        """Texts in prompt order; with `with_ids`, (text, sampled token ids) pairs, the ids ending with
        the EOS the model sampled (none when it hit max_new_tokens): what an M-step trains on. With
        `allowed_tokens`, each new token is drawn among `allowed_tokens(the row's new tokens so far)`."""
        if not prompts:
            return []
        if adapters is not None and (self.router is None or len(adapters) != len(prompts)):
            raise ValueError("per-prompt adapters need a router and one adapter index per prompt")
        tok, model = self.tok, self.model
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out: list[str | None] = [None] * len(prompts)
        greedy = sampling.temperature <= 0
        gen_kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=not greedy,
                          pad_token_id=tok.pad_token_id)
        if not greedy:
            gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        batches = length_batches(prompts, sampling.batch_size)
        eos = eos_set(model, tok)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for batch in tqdm(batches, desc=desc, disable=desc is None, leave=False):
                enc = left_padded(tok, [prompt_ids(tok, prompts[i]) for i in batch]).to(device)
                width = enc["input_ids"].shape[1]
                constraint = {} if allowed_tokens is None else dict(
                    prefix_allowed_tokens_fn=lambda _, ids, w=width: allowed_tokens(tuple(ids[w:].tolist())))
                if adapters is None:
                    gen = model.generate(**enc, **gen_kwargs, **constraint)
                else:
                    with self.router.routing([adapters[i] for i in batch]):
                        gen = model.generate(**enc, **gen_kwargs, **constraint)
                new = gen[:, width:]
                for j, i in enumerate(batch):
                    text = tok.decode(new[j], skip_special_tokens=True).strip()
                    out[i] = (text, completion_ids(new[j].tolist(), eos)) if with_ids else text
        if was_training:
            model.train()
        return out  # type: ignore[return-value]


def left_padded(tok, rows: list[list[int]]):
    """A left-padded batch (input_ids, attention_mask) of token id rows."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, r in enumerate(rows):
        if r:
            ids[n, width - len(r):] = torch.tensor(r)
            mask[n, width - len(r):] = 1
    from transformers import BatchEncoding

    return BatchEncoding({"input_ids": ids, "attention_mask": mask})


@torch.inference_mode()
def generate_shared_prefix(model, tok, prompts: list[str], max_new_tokens: int, desc: str | None = None) -> list[str]:
    """Greedy replies, one prompt at a time, to prompts that share a long prefix (few-shot prompts):
    the prefix's KV cache is computed once and a copy continues each prompt, so 100 in-context
    examples are read once instead of once per request. `generate` alone recomputes the prefix for
    every prompt. Falls back to a full forward for a prompt whose tokens do not extend the prefix's."""
    device = next(model.parameters()).device
    prefix_ids = prompt_ids(tok, os.path.commonprefix(prompts))[:-1]  # the last token may merge with what follows
    cache = model(torch.tensor([prefix_ids], device=device), use_cache=True).past_key_values if prefix_ids else None
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                  pad_token_id=tok.pad_token_id)
    out = []
    for p in tqdm(prompts, desc=desc, disable=desc is None, leave=False):
        ids = prompt_ids(tok, p)
        reuse = cache is not None and ids[:len(prefix_ids)] == prefix_ids and len(ids) > len(prefix_ids)
        t = torch.tensor([ids], device=device)
        gen = model.generate(input_ids=t, attention_mask=torch.ones_like(t),
                             past_key_values=copy.deepcopy(cache) if reuse else None, **kwargs)
        out.append(tok.decode(gen[0, len(ids):], skip_special_tokens=True).strip())
    return out
