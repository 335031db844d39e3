"""Proxy-tuning: steer a frozen model with the difference a tuned expert makes (REFERENCE 4).

At every step the next token is drawn from

    log p_base(x | x<t) + alpha * (log p_expert(x | x<t) - log p_anti(x | x<t))

(log-probabilities: per-model constants cancel, so this is the paper's logit arithmetic). Each of
the three streams keeps its own KV cache and formats the request its own way (`seal.decoding.streams`).
The expert and the anti-expert can be one model: the expert runs with a SEAL adapter switched on
and the anti-expert with it off, so only one copy of the weights is in memory.

    gen = ProxyGenerator(base=Stream(m, tok, "base"), expert=Stream(s, tok, "expert", context=on),
                         anti=Stream(s, tok, "anti"), alpha=1.0)
    gen.generate(requests, SamplingConfig(max_new_tokens=32))

`ProxyGenerator` is a `seal.generation.hf.Generator`, so QA evaluation runs on it unchanged; it
receives the raw request text and each stream applies its own `format`.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from seal.decoding.streams import Stream, StreamState, check_vocab, decode, pick, stop_ids
from seal.generation.hf import SamplingConfig, length_batches


@torch.inference_mode()
def proxy_generate(base: Stream, expert: Stream, anti: Stream, prompts: list[str], sampling: SamplingConfig,
                   alpha: float = 1.0, seed: int = 0, use_cache: bool = True, desc: str | None = None,
                   return_scores: bool = False):
    """Replies to `prompts` (raw text, formatted per stream). With `return_scores`, also each
    prompt's combined next-token scores per generated step (for tests)."""
    streams = [base, expert, anti]
    vocab = check_vocab(streams)
    stops = stop_ids(base)
    out: list[str | None] = [None] * len(prompts)
    scores_out: list[list[torch.Tensor] | None] = [None] * len(prompts)
    gen = torch.Generator().manual_seed(seed)
    todo = length_batches(prompts, sampling.batch_size)
    for idx in tqdm(todo, desc=desc, disable=desc is None, leave=False):
        texts = [prompts[i] for i in idx]
        states = [StreamState(s, s.encode(texts), vocab, use_cache) for s in streams]
        tokens: list[list[int]] = [[] for _ in idx]
        steps: list[list[torch.Tensor]] = [[] for _ in idx]
        done = torch.zeros(len(idx), dtype=torch.bool)
        for _ in range(sampling.max_new_tokens):
            lb, le, la = (torch.log_softmax(s.next_logits(), dim=-1) for s in states)
            score = lb + alpha * (le - la)
            nxt = pick(score, sampling.temperature, sampling.top_p, gen)
            for r, t in enumerate(nxt.tolist()):
                if not done[r]:
                    tokens[r].append(t)
                    if return_scores:
                        steps[r].append(score[r].detach().clone())
                    done[r] = t in stops
            if bool(done.all()):
                break
            for s in states:
                s.append(nxt)
        for r, i in enumerate(idx):
            out[i] = decode(base.tokenizer, tokens[r], stops)
            scores_out[i] = steps[r]
    return (out, scores_out) if return_scores else out


class ProxyGenerator:
    """`Generator` protocol over `proxy_generate` (prompts are raw request text)."""

    def __init__(self, base: Stream, expert: Stream, anti: Stream, alpha: float = 1.0):
        self.base, self.expert, self.anti, self.alpha = base, expert, anti, alpha
        check_vocab([base, expert, anti])  # fail at construction, not mid-run

    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int = 0, desc: str | None = None,
                 adapters: list[int] | None = None) -> list[str]:
        if adapters is not None:
            raise ValueError("ProxyGenerator: per-prompt adapters are not supported (each stream has its own)")
        return proxy_generate(self.base, self.expert, self.anti, prompts, sampling, self.alpha, seed, desc=desc)
