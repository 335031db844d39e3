"""The inner loop: apply self-edits to the resident base model with LoRA SFT, K at a time.

One base model stays resident per process. `InnerLoop` trains the adapters of up to K self-edits
together (`seal.inner_loop.multi_lora`): every optimizer step is one forward/backward through the shared
frozen base over the documents of all K adapters, each row routed to its own adapter, with
per-adapter optimizer state, learning rate, schedule, step count and gradient clipping. A job's
result equals a separate single-adapter run with the same seed up to float rounding (tested
against PEFT + `torch.optim.AdamW`), so K is a speed knob, not a change of method.

Documents are never padded to a fixed length: a step's rows are sorted by length and cut into
forward passes of at most `token_budget` padded tokens, and the loss is masked on padding (the
reference's loss-on-padding defect), each adapter's loss a token-weighted mean over its step.

The loop is our own rather than `transformers.Trainer`: an experiment runs thousands of inner
loops of a few dozen steps, and neither Trainer nor PEFT can train a batch that mixes adapters.
Schedules are transformers' own (`get_scheduler`) plus `rewarm_cosine` and `infinite`
(`seal.inner_loop.schedules`), one per adapter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from seal.inner_loop.multi_lora import MultiLoRA, target_layers
from seal.inner_loop.schedules import Scheduler, ScheduleShape, make_scheduler
from seal.models.loading import prompt_ids


@dataclass
class _Slot:
    """One job's state while K jobs train together in `InnerLoop.train_many`."""
    index: int
    rows: list[tuple[list[int], int]]  # (token ids, first target position) per training row
    plan: list[list[int]]  # the rows of each optimizer step
    sched: Any  # transformers' scheduler, driving this slot's lr
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    stop: Callable[[], bool] | None = None  # asked every `every` steps with this slot's adapter live; True ends it
    every: int = 0


class InnerLoopError(RuntimeError):
    """An inner loop could not run (NaN loss, document too long, empty input)."""


# LoRA SFT on one self-edit; the defaults follow REFERENCE 1.1 unless a comment says otherwise
@dataclass(frozen=True)
class InnerLoopConfig:
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    # explicit targets: the reference left them unset, which on Qwen2 meant q_proj and v_proj only
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # decoder layers that get adapters (PEFT's layers_to_transform: the first numbered part of a module's name);
    # empty: every layer. A band of middle layers with MLP targets is where ROME/MEMIT edit facts
    layers_to_transform: list[int] = field(default_factory=list)
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    # any transformers scheduler name but those stepped with a metric, rewarm_cosine or infinite
    # (seal.inner_loop.schedules); the default linear decay with no warmup is REFERENCE 1.1's
    scheduler: Scheduler = "linear"
    # the transformers schedule's own arguments (its `scheduler_specific_kwargs`, e.g. num_cycles for
    # cosine_with_restarts, decay_type for warmup_stable_decay); checked against the schedule when composed
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    warmup_ratio: float = 0.0
    # schedule shapes for scheduler=rewarm_cosine | infinite (REFERENCE 2); ratios of lr are x peak lr. The floor and
    # the anneal share also fill transformers' *_with_min_lr and warmup_stable_decay arguments left unset
    min_lr_ratio: float = 0.1  # rewarm_cosine / infinite floor (where the infinite schedule's anneal ends)
    const_lr_ratio: float = 0.55  # infinite: constant phase (1.65e-4 / 3e-4)
    cooldown_ratio: float = 0.2  # infinite: cooldown share of the steps
    anneal_ratio: float = 0.1  # infinite: final anneal share of the steps (warmup_stable_decay: its decay)
    anneal: bool = True  # infinite: anneal at the end (false: stay at the constant, ready to continue)
    max_seq_len: int = 1024  # a document longer than this is an error, never silently truncated
    add_eos: bool = True
    # throughput (seal.inner_loop.multi_lora): K self-edits' adapters train in one forward/backward, each with its
    # own optimizer state, and their questions are answered in one generate call; results equal separate runs
    # up to float rounding, so K only sets speed and memory
    adapters_per_batch: int = 0  # K adapters trained together; 0: as many as memory_budget_gb allows (<= max_adapters)
    memory_budget_gb: float = 4.0  # for the K adapters' weights, gradients and Adam state (fp32)
    max_adapters: int = 32
    token_budget: int = 4096  # padded tokens per training forward (a step's rows are length-sorted and cut here)
    forward_overhead_tokens: int = 32  # a forward's fixed cost in token equivalents (sets how rows are cut)


@dataclass
class TrainJob:
    documents: list[str | tuple[str, str]]  # a text, or a (prompt, completion) pair
    seed: int
    lr: float | None = None  # per-job overrides (ARC self-edits choose their own)
    epochs: int | None = None
    completion_only: bool = False  # pairs: loss on the completion tokens only (else on the whole text)
    replay: list[str] | None = None  # replay documents (general text, earlier self-edits)
    replay_fraction: float = 0.0  # share of every step's tokens taken from `replay` (seal.inner_loop.replay)
    # early stopping: asked at the end of every epoch but the last, with this job's adapter live on every row
    # (`InnerLoop.lora.routing_all`, model in eval mode, no gradients); True ends the job there
    stop_after_epoch: Callable[[], bool] | None = None


@dataclass
class TrainStats:
    steps: int
    tokens: int
    seconds: float
    losses: list[float]
    adapters: int = 1  # how many adapters shared the batch (seconds is the batch's wall time)

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def to_dict(self) -> dict:
        return {"steps": self.steps, "tokens": self.tokens, "seconds": round(self.seconds, 3),
                "adapters": self.adapters,
                "first_loss": self.losses[0] if self.losses else None, "final_loss": self.final_loss}


def slots_for_budget(model, cfg: InnerLoopConfig) -> int:
    """K from the memory budget: each adapter needs its weights, gradient and two Adam moments (fp32)."""
    if cfg.adapters_per_batch > 0:
        return cfg.adapters_per_batch
    layers = target_layers(model, cfg.target_modules, cfg.layers_to_transform)
    per = sum(cfg.lora_r * (m.in_features + m.out_features) for _, m in layers)
    k = int(cfg.memory_budget_gb * 2**30 // max(per * 16, 1))
    if k < 1:
        raise InnerLoopError(f"inner_loop.memory_budget_gb={cfg.memory_budget_gb} is too small for one adapter "
                             f"({per * 16 / 2**30:.2f} GB)")
    return min(k, cfg.max_adapters)


class InnerLoop:
    def __init__(self, model, tokenizer, cfg: InnerLoopConfig):
        self.cfg, self.tok, self.model = cfg, tokenizer, model
        self.slots = slots_for_budget(model, cfg)
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            self.lora = MultiLoRA(model, cfg.target_modules, cfg.lora_r, cfg.lora_alpha, self.slots, cfg.lora_dropout,
                                  cfg.layers_to_transform)
        except ValueError as e:
            raise InnerLoopError(str(e)) from None
        self.device = self.lora.device
        self.pad_slots = 0  # padded / total token slots over all training forwards so far
        self.total_slots = 0
        self.model.eval()

    def adapter_info(self) -> dict:
        """Which modules each inner-loop adapter trains and its trainable parameter count."""
        layers = self.lora.layers
        band = {"layers_to_transform": list(self.cfg.layers_to_transform)} if self.cfg.layers_to_transform else {}
        return {"target_modules": sorted({name.rsplit(".", 1)[-1] for name, _ in layers}), "layers": len(layers),
                **band, "lora_r": self.cfg.lora_r, "lora_alpha": self.cfg.lora_alpha,
                "trainable_params": sum(self.cfg.lora_r * (m.in_features + m.out_features) for _, m in layers)}

    @property
    def pad_fraction(self) -> float:
        return self.pad_slots / self.total_slots if self.total_slots else 0.0

    # ------------------------------------------------------------------ adapter state

    def reset(self, seed: int, slot: int = 0) -> None:
        self.lora.reset(slot, seed)

    @contextmanager
    def base_model(self):
        """Run the unadapted base model inside this block."""
        with self.lora.routing([]):
            yield self.model

    @contextmanager
    def adapter(self, slot: int = 0):
        """Every row of every forward inside this block uses adapter `slot`."""
        with self.lora.routing_all(slot):
            yield self.model

    # ------------------------------------------------------------------ data

    def encode(self, documents: list[str | tuple[str, str]], completion_only: bool = False
               ) -> list[tuple[list[int], int]]:
        """Token ids of each document and the position of its first loss target (1: every token
        after the first; a pair's completion start when `completion_only`). A pair's prompt and
        completion are tokenized apart, as generation sees a prompt that ends where the answer starts."""
        if not documents:
            raise InnerLoopError("no training documents")
        eos = [self.tok.eos_token_id] if self.cfg.add_eos else []
        encoded = []
        for i, doc in enumerate(documents):
            if isinstance(doc, str):
                ids, first = prompt_ids(self.tok, doc) + eos, 1
            else:
                prompt = prompt_ids(self.tok, doc[0])
                ids = prompt + self.tok(doc[1], add_special_tokens=False)["input_ids"] + eos
                first = max(len(prompt), 1) if completion_only else 1
            if len(ids) > self.cfg.max_seq_len:
                raise InnerLoopError(f"training document {i} has {len(ids)} tokens, more than "
                                     f"inner_loop.max_seq_len={self.cfg.max_seq_len}")
            if first >= len(ids):
                raise InnerLoopError(f"training document {i} has no completion tokens to learn")
            encoded.append((ids, first))
        return encoded

    def _epoch_batches(self, lengths: list[int], gen: torch.Generator) -> list[list[int]]:
        """Shuffled micro-batches of similar-length documents.

        Documents are shuffled, cut into windows of 8 batches, sorted by length inside each window
        (so a batch pads little), and the batches are shuffled again.
        """
        bs = self.cfg.batch_size
        order = torch.randperm(len(lengths), generator=gen).tolist()
        window = bs * 8
        batches = []
        for w in range(0, len(order), window):
            chunk = sorted(order[w:w + window], key=lambda i: lengths[i])
            batches += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
        return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]

    def plan(self, seqs: list[tuple[list[int], int]], seed: int, epochs: int) -> list[list[int]]:
        """Document indices per optimizer step (grad_accum micro-batches each), seeded."""
        gen = torch.Generator().manual_seed(seed)
        steps = []
        for _ in range(epochs):
            micro = self._epoch_batches([len(s[0]) for s in seqs], gen)
            for s in range(0, len(micro), self.cfg.grad_accum):
                steps.append([i for mb in micro[s:s + self.cfg.grad_accum] for i in mb])
        return steps

    def _forwards(self, rows: list[tuple[int, list[int], int]]) -> list[list[tuple[int, list[int], int]]]:
        """Rows (slot, ids, first target) sorted by length and cut into forwards with the least padding.

        A forward costs a fixed overhead (`forward_overhead_tokens`, in token equivalents) plus its
        padded tokens; the cut points that minimise the total over length-sorted rows come from a
        small dynamic program, each forward at most `token_budget` padded tokens.
        """
        rows = sorted(rows, key=lambda r: len(r[1]))
        n, c0, budget = len(rows), self.cfg.forward_overhead_tokens, self.cfg.token_budget
        best, cut = [0.0] + [math.inf] * n, [0] * (n + 1)
        for j in range(1, n + 1):
            width = len(rows[j - 1][1])
            for i in range(j, 0, -1):  # rows i-1 .. j-1 in one forward, padded to the longest (last)
                size = (j - i + 1) * width
                if size > budget and i < j:
                    break
                cost = best[i - 1] + c0 + size
                if cost < best[j]:
                    best[j], cut[j] = cost, i - 1
        out, j = [], n
        while j > 0:
            out.append(rows[cut[j]:j])
            j = cut[j]
        return out[::-1]

    # ------------------------------------------------------------------ training

    def train(self, documents: list[str], seed: int) -> TrainStats:
        """One job in slot 0 (the adapter stays there: use `adapter(0)`); raises its error."""
        out = self.train_many([TrainJob(documents, seed)])[0]
        if isinstance(out, InnerLoopError):
            raise out
        return out

    def train_many(self, jobs: list[TrainJob]) -> list[TrainStats | InnerLoopError]:
        """Reset slot i from jobs[i].seed and fit it to jobs[i].documents, all slots in the same
        forward/backward passes. A job that fails (too long, NaN loss) gets its error in the
        result list and does not disturb the others."""
        cfg = self.cfg
        shape = ScheduleShape(cfg.min_lr_ratio, cfg.const_lr_ratio, cfg.cooldown_ratio, cfg.anneal_ratio, cfg.anneal)
        if len(jobs) > self.slots:
            raise InnerLoopError(f"{len(jobs)} jobs for {self.slots} adapter slots")
        results: list = [None] * len(jobs)
        slots: dict[int, _Slot] = {}
        for j, job in enumerate(jobs):
            try:
                rows = self.encode(job.documents, job.completion_only)
            except InnerLoopError as e:
                results[j] = e
                continue
            lr = cfg.lr if job.lr is None else job.lr
            epochs = cfg.epochs if job.epochs is None else job.epochs
            plan = self.plan(rows, job.seed, epochs)
            if job.replay_fraction > 0:
                rows, plan = self._with_replay(job, rows, plan)
            self.reset(job.seed, j)
            # the schedule is transformers' own, driven through a placeholder optimizer per slot
            holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
            sched = make_scheduler(cfg.scheduler, holder, int(cfg.warmup_ratio * len(plan)), len(plan), shape,
                                   cfg.scheduler_kwargs)
            slots[j] = _Slot(j, rows, plan, sched, stop=job.stop_after_epoch, every=max(1, len(plan) // epochs))
        start = time.perf_counter()
        n_steps = max((len(s.plan) for s in slots.values()), default=0)
        was_training = self.model.training
        self.model.train()
        with self.lora.trainable(len(jobs)) as params:
            # torch's AdamW with one parameter group per slot: its own lr, and its own step count
            # because a slot with no gradient this step (finished, failed) is skipped
            opt = torch.optim.AdamW([{"params": ps} for ps in params], lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    fused=True)  # one pass over weights and moments (it is memory-bound)
            try:
                self._run(n_steps, slots, results, params, opt)
            finally:
                self.model.train(was_training)
                opt.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start
        for j, slot in slots.items():
            if results[j] is None:
                results[j] = TrainStats(steps=len(slot.losses), tokens=slot.tokens, seconds=seconds,
                                        losses=slot.losses, adapters=len(jobs))
        return results

    def _with_replay(self, job: TrainJob, seqs, plan):
        from seal.inner_loop.replay import replay_rows

        if not job.replay:
            raise InnerLoopError("replay_fraction > 0 but the job has no replay documents")
        if job.completion_only:
            raise InnerLoopError("replay packs whole texts: it cannot be combined with completion_only")
        return replay_rows(self.tok, seqs, plan, [prompt_ids(self.tok, d) for d in job.replay], job.replay_fraction,
                           job.seed, self.cfg.add_eos, self.cfg.max_seq_len)

    def _run(self, n_steps: int, slots: dict[int, _Slot], results: list, params, opt) -> None:
        """The optimizer steps; every active slot takes its next step, finished or failed slots sit out."""
        bar = tqdm(range(n_steps), desc=f"training {len(slots)} adapter(s)", leave=False, disable=n_steps < 2)
        for t in bar:
            active = [j for j, s in slots.items() if results[j] is None and t < len(s.plan)]
            tokens = {j: slots[j].tokens for j in active}
            step_loss = self._step(active, [(j, *slots[j].rows[i]) for j in active for i in slots[j].plan[t]], tokens)
            for j in active:
                slots[j].tokens = tokens[j]
            ok = []
            for j in active:
                lr = slots[j].sched.get_last_lr()[0]
                if not math.isfinite(step_loss[j]):
                    results[j] = InnerLoopError(f"loss became {step_loss[j]} at step {t + 1}; lower "
                                                f"inner_loop.lr (now {lr:g})")
                elif not torch.isfinite(torch.nn.utils.clip_grad_norm_(params[j], self.cfg.max_grad_norm)):
                    results[j] = InnerLoopError(f"gradient became non-finite at step {t + 1}; lower "
                                                f"inner_loop.lr (now {lr:g})")
                else:
                    ok.append(j)
                    opt.param_groups[j]["lr"] = lr
            for j in set(active) - set(ok):
                for p in params[j]:
                    p.grad = None
            opt.step()
            for j in ok:
                slots[j].sched.optimizer.step()  # the placeholder: keeps torch's step-order check quiet
                slots[j].sched.step()
                slots[j].losses.append(step_loss[j])
            opt.zero_grad(set_to_none=True)
            for j in ok:
                s = slots[j]
                if s.stop is not None and (t + 1) % s.every == 0 and t + 1 < len(s.plan) and self._asks_stop(j, s.stop):
                    s.plan = s.plan[: t + 1]

    def _asks_stop(self, j: int, stop: Callable[[], bool]) -> bool:
        """Slot j's early-stopping question, asked of the model with only its adapter live."""
        self.model.eval()
        try:
            with torch.no_grad(), self.lora.routing_all(j):
                return bool(stop())
        finally:
            self.model.train()

    def _step(self, active: list[int], rows: list[tuple[int, list[int], int]], tokens: dict[int, int]
              ) -> dict[int, float]:
        """Forward/backward over one step's rows (slot, ids, first target) of all active slots;
        returns each slot's loss (token-weighted mean over its step), gradients left in the adapters."""
        n_pred = {j: 0 for j in active}
        for j, ids, first in rows:
            n_pred[j] += len(ids) - first
        loss_sum = {j: 0.0 for j in active}
        pad = self.tok.pad_token_id
        for fwd in self._forwards(rows):
            width = len(fwd[-1][1])
            fwd = sorted(fwd, key=lambda r: r[0])  # each slot's rows contiguous: one segment per slot
            ids = torch.full((len(fwd), width), pad, dtype=torch.long)
            mask = torch.zeros((len(fwd), width), dtype=torch.long)
            target = torch.zeros((len(fwd), width - 1), dtype=torch.bool)  # position t predicts token t+1
            for r, (_, s, first) in enumerate(fwd):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
                target[r, first - 1: len(s) - 1] = True
            ids, mask = ids.to(self.device), mask.to(self.device)
            in_forward = [j for j, _, _ in fwd]
            self.total_slots += ids.numel()
            self.pad_slots += ids.numel() - int(mask.sum())
            with self.lora.routing(in_forward):
                hidden = self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            # the LM head and loss only where a real next token is a target (by position, not token
            # id: pad may equal EOS), saving the head's work on padding, prompts and last positions
            has_next = target.to(self.device)
            logits = self.model.get_output_embeddings()(hidden[:, :-1][has_next]).float()
            tok_loss = F.cross_entropy(logits, ids[:, 1:][has_next], reduction="none")
            row_of = torch.arange(len(fwd), device=self.device).unsqueeze(1).expand_as(has_next)[has_next]
            weight = torch.tensor([1.0 / n_pred[j] for j in in_forward], device=self.device)
            per_row = torch.zeros(len(fwd), device=self.device).index_add(0, row_of, tok_loss) * weight
            per_row.sum().backward()
            for j, v in zip(in_forward, per_row.detach().tolist()):
                loss_sum[j] += v
            for j, (_, s, _) in zip(in_forward, fwd):
                tokens[j] += len(s)
        return loss_sum
