"""Token-by-token decoding over several models at once: the common part of proxy-tuning and Co-LLM.

A `Stream` is one participant: its weights, its tokenizer, how it formats a prompt (a chat model
and a plain one see the same request differently) and the adapter state it runs in (`context`, so
an expert and its anti-expert can be one model with an adapter switched on and off). A
`StreamState` holds one batch of sequences in one stream: left-padded token ids, the attention mask
and the KV cache, plus how many columns the cache has already read. Tokens are appended without
running the model; `next_logits()` first feeds whatever the cache has not seen. That makes the
cache lazy for free: a stream that is consulted only now and then (Co-LLM's assistant) catches up
on all pending tokens in one forward when it is next asked, and `use_cache=False` recomputes the
whole sequence instead, which is what the tests compare against.

`generate` in transformers cannot do this: it drives one model, and combining several models'
next-token distributions needs a loop that owns every cache.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seal.models.loading import prompt_ids


class VocabularyError(ValueError):
    pass


@dataclass
class Stream:
    model: nn.Module
    tokenizer: Any
    name: str = "stream"
    format: Callable[[str], str] = field(default=lambda text: text)
    context: Callable[[], AbstractContextManager] = field(default=nullcontext)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [prompt_ids(self.tokenizer, self.format(t)) for t in texts]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def check_vocab(streams: list[Stream]) -> int:
    """The vocabulary size the streams share; a clear error if their tokenizers differ anywhere,
    or if a model's output layer is narrower than the vocabulary."""
    ref = streams[0]
    ref_vocab = ref.tokenizer.get_vocab()
    for s in streams[1:]:
        if s.tokenizer is ref.tokenizer:
            continue
        vocab = s.tokenizer.get_vocab()
        if vocab != ref_vocab:
            only_ref = sorted(set(ref_vocab) - set(vocab))[:3]
            only_s = sorted(set(vocab) - set(ref_vocab))[:3]
            moved = sorted(t for t in set(vocab) & set(ref_vocab) if vocab[t] != ref_vocab[t])[:3]
            raise VocabularyError(
                f"streams '{ref.name}' and '{s.name}' do not share a vocabulary ({len(ref_vocab)} vs {len(vocab)} "
                f"tokens; only in '{ref.name}': {only_ref}, only in '{s.name}': {only_s}, different ids: {moved}); "
                f"their next-token distributions cannot be combined")
    size = len(ref.tokenizer)
    for s in streams:
        width = s.model.get_output_embeddings().out_features
        if width < size:
            raise VocabularyError(f"stream '{s.name}': the model's output layer has {width} logits, fewer than the "
                                  f"tokenizer's {size} tokens")
    return size


def stop_ids(stream: Stream) -> set[int]:
    """Token ids that end a reply: the tokenizer's EOS and the model's generation-config EOS."""
    ids = {stream.tokenizer.eos_token_id}
    gc = getattr(stream.model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return {i for i in ids if i is not None}


class StreamState:
    """One batch of sequences in one stream, with a KV cache that reads appended tokens lazily."""

    def __init__(self, stream: Stream, prompt_ids: list[list[int]], vocab: int, use_cache: bool = True):
        self.stream, self.vocab, self.use_cache = stream, vocab, use_cache
        device = stream.device
        width = max(len(p) for p in prompt_ids)
        pad = stream.tokenizer.pad_token_id if stream.tokenizer.pad_token_id is not None else 0
        self.ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long, device=device)
        self.mask = torch.zeros((len(prompt_ids), width), dtype=torch.long, device=device)
        for i, p in enumerate(prompt_ids):
            if p:
                self.ids[i, width - len(p):] = torch.tensor(p, device=device)
                self.mask[i, width - len(p):] = 1
        self.cache = None
        self.fed = 0  # columns of `ids` the cache has read
        self.forwards = 0

    def append(self, tokens: torch.Tensor) -> None:
        self.ids = torch.cat([self.ids, tokens.view(-1, 1).to(self.ids.device)], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)

    def next_hidden(self) -> torch.Tensor:
        """The last layer's hidden state at the last position, [batch, hidden], after feeding the
        model every column it has not read yet (all of them without a cache)."""
        start = self.fed if self.use_cache else 0
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        with self.stream.context():
            out = self.stream.model.base_model(
                input_ids=self.ids[:, start:], attention_mask=self.mask, position_ids=positions[:, start:],
                past_key_values=self.cache if self.use_cache else None, use_cache=self.use_cache)
        if self.use_cache:
            self.cache, self.fed = out.past_key_values, self.ids.shape[1]
        self.forwards += 1
        return out.last_hidden_state[:, -1]

    def logits_from(self, hidden: torch.Tensor) -> torch.Tensor:
        with self.stream.context():
            logits = self.stream.model.get_output_embeddings()(hidden)
        return logits[:, :self.vocab].float()

    def next_logits(self) -> torch.Tensor:
        """Next-token logits over the shared vocabulary, [batch, vocab], in float32."""
        return self.logits_from(self.next_hidden())


def pick(scores: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> torch.Tensor:
    """Greedy (temperature <= 0) or nucleus sampling from [batch, vocab] scores."""
    if temperature <= 0:
        return scores.argmax(-1)
    probs = torch.softmax(scores / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest prefix whose mass reaches top_p
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)
    return torch.multinomial(probs.cpu(), 1, generator=gen).view(-1).to(scores.device)


def decode(tok, tokens: list[int], stops: set[int]) -> str:
    """Text of a generated token list, cut at the first stop token."""
    for i, t in enumerate(tokens):
        if t in stops:
            tokens = tokens[:i]
            break
    return tok.decode(tokens, skip_special_tokens=True).strip()
