"""K LoRA adapters on one frozen base model, used together in one batch.

Each row of a batch is routed to its own adapter slot (or to none: the plain base model), so the
adapters of K self-edits train in one forward/backward through the shared base, and the questions
of K adapted models are answered in one `generate` call. PEFT can hold many adapters but cannot
train a batch that mixes them (its `adapter_names` routing is inference-only), which is why this
module exists.

The adapters are stored slot-stacked per target layer, `A: [slots, r, in]` and `B: [slots, out, r]`,
and added to each target `nn.Linear` by a forward hook, so the model itself is never modified or
copied and the hooks cost nothing while no routing is set.

Two ways to apply a routed update, chosen per forward:
- segments (training, and inference with few adapters): the rows of each slot are contiguous, so
  each slot's update is two plain matmuls on a view of its rows, the updates concatenated in row
  order and added once (slice-adding in place would copy the whole output gradient per slot); in
  training every slot's weights are their own leaf tensors, so gradients are exactly slot-sized
  (slicing one stacked parameter inside autograd would zero-fill a full-size gradient per layer
  per backward);
- gather (inference with many adapters interleaved, e.g. decoding steps): rows are gathered into
  per-slot groups and the update is two batched matmuls per layer.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager

import torch
from torch import nn

SEGMENT_LOOP_MAX = 4  # in inference, more segments than this use the gather path (fewer, larger ops)


_LAYER_INDEX = re.compile(r".*?\.[^.]*\.(\d+)\.")  # PEFT's rule: the first numbered part (model.layers.<i>.)


def layer_index(name: str) -> int | None:
    """The decoder-layer index of a module name as PEFT's `layers_to_transform` reads it, or None."""
    match = _LAYER_INDEX.match(name)
    return int(match.group(1)) if match else None


def target_layers(model: nn.Module, target_modules: list[str], layers: list[int] | None = None
                  ) -> list[tuple[str, nn.Linear]]:
    """The linear layers whose last name part is a target, in module order (PEFT's order); with `layers`
    (PEFT's `layers_to_transform`; empty or None: all), only those in the decoder layers listed."""
    wanted = set(layers or ())
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules
            and (not wanted or layer_index(name) in wanted)]


class MultiLoRA:
    def __init__(self, model: nn.Module, target_modules: list[str], r: int, alpha: float, slots: int,
                 dropout: float = 0.0, layers: list[int] | None = None):
        self.r, self.scale, self.slots, self.dropout = r, alpha / r, slots, dropout
        every = target_layers(model, target_modules)
        found = {n.rsplit(".", 1)[-1] for n, _ in every}
        missing = [t for t in target_modules if t not in found]
        if missing:
            present = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ValueError(f"inner_loop.target_modules: {missing} not found in the model (its linear layers: {present})")
        indices = {layer_index(n) for n, _ in every} - {None}
        absent = sorted(set(layers or ()) - indices)
        if absent:
            span = f"0..{max(indices)}" if indices else "none: its target layers carry no layer index"
            raise ValueError(f"inner_loop.layers_to_transform: {absent} are not decoder layers of the model ({span})")
        self.layers = target_layers(model, target_modules, layers)
        self.device = next(model.parameters()).device
        dtype = torch.float32  # adapters and their optimizer state stay fp32 whatever the base dtype
        self.A = [torch.zeros(slots, r, m.in_features, device=self.device, dtype=dtype) for _, m in self.layers]
        self.B = [torch.zeros(slots, m.out_features, r, device=self.device, dtype=dtype) for _, m in self.layers]
        self._leaves: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None
        self._route: _Route | None = None
        self._handles = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)]

    # ------------------------------------------------------------------ weights

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

    @torch.no_grad()
    def load_slot(self, slot: int, state: dict[str, torch.Tensor]) -> None:
        """Put an adapter saved by `slot_state` back into `slot`."""
        for (name, _), a, b in zip(self.layers, self.A, self.B):
            a[slot].copy_(state[f"{name}.lora_A.weight"])
            b[slot].copy_(state[f"{name}.lora_B.weight"])

    @torch.no_grad()
    def merge(self, slot: int) -> None:
        """Fold adapter `slot` into the base weights (W += scale * B @ A) and reset it to a no-op:
        sequential self-edits (continual learning) build on the merged model."""
        for (_, m), a, b in zip(self.layers, self.A, self.B):
            m.weight += (b[slot] @ a[slot]).mul_(self.scale).to(m.weight.dtype)
            b[slot].zero_()

    @contextmanager
    def trainable(self, n: int):
        """Slots 0..n-1 as leaf tensors that require grad, one list of tensors per slot. They are
        views of the stored weights, so in-place optimizer updates land there."""
        self._leaves = [([a[k].detach().requires_grad_() for a in self.A],
                         [b[k].detach().requires_grad_() for b in self.B]) for k in range(n)]
        try:
            yield [a + b for a, b in self._leaves]
        finally:
            self._leaves = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # ------------------------------------------------------------------ routing

    @contextmanager
    def routing(self, slots_per_row: list[int]):
        """Inside this block row i of every forward uses adapter `slots_per_row[i]` (-1: none).
        The batch size of the forwards must equal len(slots_per_row)."""
        previous = self._route
        self._route = _Route(list(slots_per_row), self.device)
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

    def _slot_weights(self, layer: int, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._leaves is not None:
            return self._leaves[slot][0][layer], self._leaves[slot][1][layer]
        return self.A[layer][slot], self.B[layer][slot]

    def _delta(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = x.to(a.dtype)
        if self.dropout and torch.is_grad_enabled():
            x = nn.functional.dropout(x, self.dropout, training=True)
        return ((x @ a.T) @ b.T).mul_(self.scale)

    def _hook(self, layer: int):
        def hook(module, inputs, output):
            route = self._route
            if route is None or route.empty:
                return output
            x = inputs[0]
            if route.whole is not None:
                a, b = self._slot_weights(layer, route.whole)
                return output + self._delta(x, a, b).to(output.dtype)
            if x.shape[0] != route.rows:
                raise RuntimeError(f"routed forward got {x.shape[0]} rows but the routing names {route.rows}")
            if route.segments is not None and (self._leaves is not None or len(route.segments) <= SEGMENT_LOOP_MAX):
                # one delta per run of rows, concatenated in row order (zeros for base-model rows);
                # slice-adding into the output in place would copy its whole gradient per segment
                pieces, at = [], 0
                for slot, s, e in route.segments:
                    if s > at:
                        pieces.append(output.new_zeros(s - at, *output.shape[1:]))
                    a, b = self._slot_weights(layer, slot)
                    pieces.append(self._delta(x[s:e], a, b).to(output.dtype))
                    at = e
                if at < route.rows:
                    pieces.append(output.new_zeros(route.rows - at, *output.shape[1:]))
                return output + (torch.cat(pieces) if len(pieces) > 1 else pieces[0])
            if self._leaves is not None:
                raise RuntimeError("training forwards must keep each slot's rows contiguous")
            a, b = self.A[layer][route.slots], self.B[layer][route.slots]
            t, d_in = x.shape[1], x.shape[2]
            xf = x.to(a.dtype)
            # rows grouped by slot: [groups, width * t, in]; ragged groups read a zero row as padding
            xz = torch.cat([xf, xf.new_zeros(1, t, d_in)]) if route.padded else xf
            xg = xz[route.gather].reshape(route.groups, route.width * t, d_in)
            delta = torch.bmm(torch.bmm(xg, a.transpose(1, 2)), b.transpose(1, 2)).mul_(self.scale)
            delta = delta.reshape(route.groups * route.width, t, -1)
            return output.index_add(0, route.rows_out, delta[route.valid].to(output.dtype))
        return hook


class _Route:
    """Precomputed index plumbing for one routing: which rows go to which slot."""

    whole: int | None = None
    segments: list[tuple[int, int, int]] | None = None

    @classmethod
    def all_rows(cls, slot: int) -> _Route:
        route = cls.__new__(cls)
        route.whole, route.empty = slot, False
        return route

    def __init__(self, per_row: list[int], device):
        self.rows = len(per_row)
        used = sorted({s for s in per_row if s >= 0})
        self.empty = not used
        if self.empty:
            return
        # contiguous runs of one slot; usable as segments when no slot appears in two runs
        runs, start = [], 0
        for i in range(1, self.rows + 1):
            if i == self.rows or per_row[i] != per_row[start]:
                if per_row[start] >= 0:
                    runs.append((per_row[start], start, i))
                start = i
        if len({s for s, _, _ in runs}) == len(runs):
            self.segments = runs
        members = [[i for i, s in enumerate(per_row) if s == slot] for slot in used]
        self.groups, self.width = len(used), max(len(m) for m in members)
        self.padded = any(len(m) < self.width for m in members)
        pad_row = self.rows  # index of the zero row appended when groups are ragged
        flat = [i for m in members for i in m + [pad_row] * (self.width - len(m))]
        self.gather = torch.tensor(flat, device=device)
        self.valid = torch.tensor([j for j, i in enumerate(flat) if i != pad_row], device=device)
        self.rows_out = torch.tensor([i for i in flat if i != pad_row], device=device)
        self.slots = torch.tensor(used, device=device)
