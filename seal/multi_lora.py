"""K LoRA adapters on one frozen base model, used together in one batch.

Each row of a batch is routed to its own adapter slot (or to none: the plain base model), so the
adapters of K self-edits train in one forward/backward through the shared base, and the questions
of K adapted models are answered in one `generate` call. PEFT can hold many adapters but cannot
train a batch that mixes them (its `adapter_names` routing is inference-only and loops over
adapters), which is why this module exists.

The adapters live as slot-stacked tensors per target layer, `A: [slots, r, in]` and
`B: [slots, out, r]`, added to each target `nn.Linear` by a forward hook, so the model itself is
never modified or copied and the hooks cost nothing while no routing is set. In a routed forward
the rows are gathered into per-slot groups and the update is two batched matmuls per layer.

`AdamWSlots` is the optimizer for slot-stacked tensors: every slot has its own learning rate, step
count and gradient clipping, and only the slots that took part in a step are updated, so a slot's
trajectory is the one a separate single-adapter run with `torch.optim.AdamW` would follow.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn


class MultiLoRA:
    def __init__(self, model: nn.Module, target_modules: list[str], r: int, alpha: float, slots: int,
                 dropout: float = 0.0):
        self.r, self.scale, self.slots, self.dropout = r, alpha / r, slots, dropout
        self.layers: list[tuple[str, nn.Linear]] = [
            (name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules]
        found = {n.rsplit(".", 1)[-1] for n, _ in self.layers}
        missing = [t for t in target_modules if t not in found]
        if missing:
            present = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ValueError(f"inner_loop.target_modules: {missing} not found in the model (its linear layers: {present})")
        p0 = next(model.parameters())
        self.device = p0.device
        dtype = torch.float32  # adapters and their optimizer state stay fp32 whatever the base dtype
        self.A = [torch.zeros(slots, r, m.in_features, device=self.device, dtype=dtype, requires_grad=True)
                  for _, m in self.layers]
        self.B = [torch.zeros(slots, m.out_features, r, device=self.device, dtype=dtype, requires_grad=True)
                  for _, m in self.layers]
        self._route: _Route | None = None
        self._handles = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)]

    # ------------------------------------------------------------------ parameters

    def parameters(self) -> list[torch.Tensor]:
        return self.A + self.B

    def params_per_slot(self) -> int:
        return sum(a[0].numel() for a in self.A) + sum(b[0].numel() for b in self.B)

    @torch.no_grad()
    def reset(self, slot: int, seed: int) -> None:
        """A from `seed` exactly as PEFT's default LoRA init (kaiming-uniform, layer by layer in
        module order), B zero: the adapter starts as a no-op and matches a PEFT adapter reset
        from the same seed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for a, b in zip(self.A, self.B):
                w = torch.empty(a.shape[1:], dtype=a.dtype)
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))
                a[slot].copy_(w)
                b[slot].zero_()

    def slot_state(self, slot: int) -> dict[str, torch.Tensor]:
        """One adapter's weights under PEFT's key names (`<layer>.lora_A.weight`), for saving."""
        out = {}
        for (name, _), a, b in zip(self.layers, self.A, self.B):
            out[f"{name}.lora_A.weight"] = a[slot].detach().clone()
            out[f"{name}.lora_B.weight"] = b[slot].detach().clone()
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # ------------------------------------------------------------------ routing

    @contextmanager
    def routing(self, slots_per_row: list[int] | torch.Tensor):
        """Inside this block row i of every forward uses adapter `slots_per_row[i]` (-1: none).
        The batch size of the forwards must equal len(slots_per_row)."""
        previous = self._route
        self._route = _Route(torch.as_tensor(slots_per_row, dtype=torch.long), self.device)
        try:
            yield
        finally:
            self._route = previous

    @contextmanager
    def routing_all(self, slot: int):
        """Inside this block every row of every forward uses adapter `slot`, whatever the batch size."""
        previous = self._route
        self._route = _Route.all_rows(slot)
        try:
            yield
        finally:
            self._route = previous

    def _hook(self, layer: int):
        def hook(module, inputs, output):
            route = self._route
            if route is None or route.empty:
                return output
            x = inputs[0]
            if route.whole is not None:  # every row to one slot: one matmul pair over all tokens
                a, b = self.A[layer][route.whole], self.B[layer][route.whole]
                xf = x.to(a.dtype)
                if self.dropout and torch.is_grad_enabled():
                    xf = nn.functional.dropout(xf, self.dropout, training=True)
                return output + ((xf @ a.T) @ b.T).mul_(self.scale).to(output.dtype)
            if x.shape[0] != route.rows:
                raise RuntimeError(f"routed forward got {x.shape[0]} rows but the routing names {route.rows}")
            a, b = self.A[layer][route.slots], self.B[layer][route.slots]
            t, d_in = x.shape[1], x.shape[2]
            xf = x.to(a.dtype)
            if self.dropout and torch.is_grad_enabled():
                xf = nn.functional.dropout(xf, self.dropout, training=True)
            # group rows by slot: [groups, width, t, in], padding positions read a zero row
            xz = torch.cat([xf, xf.new_zeros(1, t, d_in)]) if route.padded else xf
            xg = xz[route.gather].reshape(route.groups, route.width * t, d_in)
            h = torch.bmm(xg, a.transpose(1, 2))
            delta = torch.bmm(h, b.transpose(1, 2)).mul_(self.scale)
            delta = delta.reshape(route.groups * route.width, t, -1)
            if route.identity:
                return output + delta.to(output.dtype)
            return output.index_add(0, route.rows_out, delta[route.valid].to(output.dtype))
        return hook


class _Route:
    """Precomputed index plumbing for one routing: which rows go to which slot group."""

    whole: int | None = None

    @classmethod
    def all_rows(cls, slot: int) -> "_Route":
        route = cls.__new__(cls)
        route.whole, route.empty = slot, False
        return route

    def __init__(self, per_row: torch.Tensor, device):
        self.rows = len(per_row)
        used = sorted({int(s) for s in per_row.tolist() if s >= 0})
        self.empty = not used
        if self.empty:
            return
        members = [[i for i, s in enumerate(per_row.tolist()) if s == slot] for slot in used]
        self.groups, self.width = len(used), max(len(m) for m in members)
        self.padded = any(len(m) < self.width for m in members)
        pad_row = self.rows  # index of the zero row appended when groups are ragged
        gather = [m + [pad_row] * (self.width - len(m)) for m in members]
        flat = [i for g in gather for i in g]
        self.gather = torch.tensor(flat, device=device)
        self.valid = torch.tensor([j for j, i in enumerate(flat) if i != pad_row], device=device)
        self.rows_out = torch.tensor([i for i in flat if i != pad_row], device=device)
        self.identity = flat == list(range(self.rows))
        self.slots = _selector(used, device)


def _selector(slots: list[int], device) -> slice | torch.Tensor:
    """Index for the given slots of a slot-stacked tensor: a slice (a view, no copy) when they are
    contiguous, else an index tensor."""
    if slots == list(range(slots[0], slots[0] + len(slots))):
        return slice(slots[0], slots[0] + len(slots))
    return torch.tensor(slots, device=device)


class AdamWSlots:
    """AdamW over slot-stacked tensors with per-slot learning rate, step count and grad clipping.

    The arithmetic follows `torch.optim.AdamW` (decoupled weight decay, bias corrections, eps added
    to the corrected second-moment root) so a slot's update equals a separate run's up to float
    rounding. `step(active, lrs)` updates only the slots in `active`.
    """

    def __init__(self, params: list[torch.Tensor], slots: int, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, max_grad_norm: float | None = 1.0):
        self.params, self.slots = params, slots
        self.b1, self.b2 = betas
        self.eps, self.wd, self.max_norm = eps, weight_decay, max_grad_norm
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros(slots, dtype=torch.long)

    def reset(self, slot: int) -> None:
        for m, v in zip(self.m, self.v):
            m[slot].zero_()
            v[slot].zero_()
        self.t[slot] = 0

    @torch.no_grad()
    def grad_norms(self, active: list[int]) -> torch.Tensor:
        """Per-slot L2 norm of the gradient over all layers, as `clip_grad_norm_` computes it."""
        sel = _selector(active, self.params[0].device)
        sq = torch.zeros(len(active), dtype=torch.float32, device=self.params[0].device)
        for p in self.params:
            if p.grad is not None:
                sq += p.grad[sel].float().pow(2).flatten(1).sum(1)
        return sq.sqrt()

    @torch.no_grad()
    def step(self, active: list[int], lrs: list[float], norms: torch.Tensor | None = None) -> None:
        if not active:
            return
        dev = self.params[0].device
        sel = _selector(active, dev)
        self.t[active] += 1
        t = self.t[active].double()
        lr = torch.tensor(lrs, dtype=torch.float64)
        step_size = (lr / (1 - self.b1 ** t)).float().to(dev)
        bc2_sqrt = (1 - self.b2 ** t).sqrt().float().to(dev)
        decay = (1 - lr * self.wd).float().to(dev)
        coef = None
        if self.max_norm is not None:
            norms = self.grad_norms(active) if norms is None else norms
            coef = (self.max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            g = p.grad[sel]
            if coef is not None:
                g = g * coef.view(shape)
            pa, ma, va = p.data[sel], m[sel], v[sel]  # views for a slice, copies for an index
            if self.wd:
                pa.mul_(decay.view(shape))
            ma.lerp_(g, 1 - self.b1)
            va.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (va.sqrt() / bc2_sqrt.view(shape)).add_(self.eps)
            pa.sub_(ma / denom * step_size.view(shape))
            if not isinstance(sel, slice):
                p.data[sel], m[sel], v[sel] = pa, ma, va

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
