"""The inner loop: apply one self-edit to the resident base model with LoRA SFT.

One base model stays resident per process. `InnerLoop` injects a single LoRA adapter once, with
explicit target modules, and re-initialises its weights in place before each self-edit, so no
inner loop ever reloads or copies the model. Training documents are batched with dynamic padding
(pad to the longest document in the batch, not to a fixed length) and the loss is masked on
padding, fixing the reference's loss-on-padding defect.

The training loop is our own (AdamW + a transformers scheduler + grad clipping) rather than
`transformers.Trainer`: an experiment runs thousands of inner loops of a few dozen steps each, and
building a Trainer (accelerate state, callbacks, logging) per loop costs more than the loop itself.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

ADAPTER = "self_edit"


class InnerLoopError(RuntimeError):
    """An inner loop could not run (NaN loss, document too long, empty input)."""


@dataclass
class InnerLoopConfig:
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    scheduler: str = "linear"  # any transformers scheduler name
    warmup_ratio: float = 0.0
    max_seq_len: int = 1024  # a document longer than this is an error, never silently truncated
    add_eos: bool = True


@dataclass
class TrainStats:
    steps: int
    tokens: int
    seconds: float
    losses: list[float]

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def to_dict(self) -> dict:
        return {"steps": self.steps, "tokens": self.tokens, "seconds": round(self.seconds, 3),
                "first_loss": self.losses[0] if self.losses else None, "final_loss": self.final_loss}


class InnerLoop:
    def __init__(self, model, tokenizer, cfg: InnerLoopConfig):
        from peft import LoraConfig, get_peft_model

        self.cfg = cfg
        self.tok = tokenizer
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [m for m in cfg.target_modules if m not in present]
        if missing:
            raise InnerLoopError(f"inner_loop.target_modules: {missing} not found in the model "
                                 f"(it has e.g. {sorted(present)[:12]})")
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
        self.model = get_peft_model(model, lora, adapter_name=ADAPTER)
        self.model.eval()
        self.device = next(model.parameters()).device

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if "lora_" in n and ADAPTER in n]

    def reset(self, seed: int) -> None:
        """Re-initialise the adapter in place (A random from `seed`, B zero: a no-op adapter)."""
        from peft.tuners.lora import LoraLayer

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in self.model.modules():
                if isinstance(module, LoraLayer):
                    module.reset_lora_parameters(ADAPTER, True)

    @contextmanager
    def base_model(self):
        """Run the unadapted base model (adapter bypassed) inside this block."""
        with self.model.disable_adapter():
            yield self.model

    def encode(self, documents: list[str]) -> list[list[int]]:
        eos = [self.tok.eos_token_id] if self.cfg.add_eos else []
        encoded = []
        for i, doc in enumerate(documents):
            ids = self.tok(doc, add_special_tokens=True)["input_ids"] + eos
            if len(ids) > self.cfg.max_seq_len:
                raise InnerLoopError(f"training document {i} has {len(ids)} tokens, more than "
                                     f"inner_loop.max_seq_len={self.cfg.max_seq_len}")
            encoded.append(ids)
        return encoded

    def _batch(self, seqs: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        labels = ids.masked_fill(mask == 0, -100)  # by mask, not token id: pad may equal EOS
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                "labels": labels.to(self.device)}

    def _epoch_batches(self, lengths: list[int], gen: torch.Generator) -> list[list[int]]:
        """Shuffled micro-batches of similar-length documents.

        Documents are shuffled, cut into windows of 8 batches, sorted by length inside each window
        (so a batch pads little), and the batches are shuffled again. On CPU the padding a random
        batch of a passage and short self-edit lines would carry costs more than the real tokens.
        """
        bs = self.cfg.batch_size
        order = torch.randperm(len(lengths), generator=gen).tolist()
        window = bs * 8
        batches = []
        for w in range(0, len(order), window):
            chunk = sorted(order[w:w + window], key=lambda i: lengths[i])
            batches += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
        return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]

    def train(self, documents: list[str], seed: int) -> TrainStats:
        """Reset the adapter from `seed` and fit it to `documents`. The model is left adapted."""
        from transformers import get_scheduler

        cfg = self.cfg
        if not documents:
            raise InnerLoopError("no training documents")
        seqs = self.encode(documents)
        self.reset(seed)
        params = self.lora_parameters()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        per_epoch = math.ceil(len(seqs) / (cfg.batch_size * cfg.grad_accum))
        total = per_epoch * cfg.epochs
        sched = get_scheduler(cfg.scheduler, opt, num_warmup_steps=int(cfg.warmup_ratio * total),
                              num_training_steps=total)
        gen = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        tokens = 0
        start = time.perf_counter()
        self.model.train()
        try:
            for epoch in range(cfg.epochs):
                micro = self._epoch_batches([len(s) for s in seqs], gen)
                for s in range(0, len(micro), cfg.grad_accum):
                    group = micro[s:s + cfg.grad_accum]
                    n_tok = sum(len(seqs[i]) - 1 for mb in group for i in mb)
                    step_loss = 0.0
                    for mb in group:
                        batch = self._batch([seqs[i] for i in mb])
                        out = self.model(**batch)
                        # weight each micro-batch by its share of predicted tokens
                        share = sum(len(seqs[i]) - 1 for i in mb) / n_tok
                        (out.loss * share).backward()
                        step_loss += out.loss.item() * share
                        tokens += int(batch["attention_mask"].sum())
                    if not math.isfinite(step_loss):
                        raise InnerLoopError(f"loss became {step_loss} at epoch {epoch + 1}, step "
                                             f"{len(losses) + 1}; lower inner_loop.lr (now {cfg.lr})")
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(step_loss)
        finally:
            self.model.eval()
            opt.zero_grad(set_to_none=True)
        return TrainStats(steps=len(losses), tokens=tokens, seconds=time.perf_counter() - start, losses=losses)
