"""Co-LLM: a base model that learns, token by token, when to let a frozen assistant write (REFERENCE 5).

A deferral head (its own linear layer, not the tied output embedding) reads the base model's last
hidden state h_t and gives P(assistant writes token t) = sigmoid(w . h_t + b). Training:

1. weak-label initialisation: z_t = 1 where the assistant's greedy token is the gold token and the
   base model's is not; the head is fitted to z with a positive-class weight (8);
2. the marginal likelihood of the gold text,
       L = -mean_t log[ sigmoid(-s_t) P_base(x_t | x<t) + sigmoid(s_t) P_asst(x_t | x<t) ].

Both models stay frozen (here the base model is the one that has absorbed knowledge; training it
would change what it knows), so their per-token features are computed once and the head is
trained on them with the transformers `Trainer` (linear schedule, warmup). The loss is a mean over
tokens, so batching tokens from different texts is the same objective.

Decoding is greedy: the base model writes unless sigmoid(s_t) > eta, then the assistant does. The
assistant's KV cache is lazy (`seal.decoding.streams.StreamState`): it reads the tokens written since its
last turn only when it is next asked. eta comes from validation tokens, either for a target
deferral rate or by Youden's J against the weak labels.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from seal.decoding.streams import Stream, StreamState, check_vocab, decode, stop_ids
from seal.generation.hf import SamplingConfig, length_batches


@dataclass(frozen=True)
class CoLLMConfig:
    init_epochs: int = 5  # weak-label fit (positive class weighted by pos_weight)
    init_lr: float = 1e-3
    pos_weight: float = 8.0
    epochs: int = 2  # marginal likelihood of the gold answers
    lr: float = 1e-3  # the paper's 2e-5 trains the whole base model; only a fresh head trains here
    warmup: float = 0.04  # fraction of steps
    batch_size: int = 32
    eta: str = "youden"  # youden | rate (eta for `target_rate` on validation tokens) | a number in [0, 1]
    target_rate: float = 0.5
    # one Co-LLM point per validation deferral rate
    sweep_rates: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])


class DeferralHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden.float()).squeeze(-1)


def marginal_nll(s: torch.Tensor, lp_base: torch.Tensor, lp_asst: torch.Tensor) -> torch.Tensor:
    """Per-token -log[sigmoid(-s) P_base + sigmoid(s) P_asst], computed in log space."""
    return -torch.logaddexp(F.logsigmoid(-s) + lp_base, F.logsigmoid(s) + lp_asst)


# ---------------------------------------------------------------------------------------- features

@torch.inference_mode()
def _gold_view(stream: Stream, prompt: str, gold_ids: list[int], vocab: int):
    """The stream's hidden states, gold log-probs and greedy tokens at the positions that predict
    each gold token."""
    ids = stream.encode([prompt])[0]
    if not ids:
        raise ValueError(f"stream '{stream.name}': the prompt {prompt!r} has no tokens; at least one token must "
                         f"precede the gold text")
    seq = torch.tensor([ids + gold_ids], device=stream.device)
    with stream.context():
        h = stream.model.base_model(input_ids=seq).last_hidden_state[0, len(ids) - 1:-1]
        logp = torch.log_softmax(stream.model.get_output_embeddings()(h)[:, :vocab].float(), dim=-1)
    gold = torch.tensor(gold_ids, device=logp.device)
    return h.float().cpu(), logp.gather(1, gold[:, None]).squeeze(1).cpu(), logp.argmax(-1).cpu()


def token_features(base: Stream, assistant: Stream, examples: list[tuple[str, str]],
                   desc: str | None = None) -> dict[str, torch.Tensor]:
    """Per gold token of every (prompt, gold reply) pair: the base model's hidden state, both
    models' log-probability of the gold token, and the weak label. The reply ends with EOS, so the
    head also learns who should end it."""
    vocab = check_vocab([base, assistant])
    eos = base.tokenizer.eos_token_id
    cols: dict[str, list[torch.Tensor]] = {"hidden": [], "lp_base": [], "lp_asst": [], "weak": []}
    for prompt, gold in tqdm(examples, desc=desc, disable=desc is None, leave=False):
        gold_ids = base.tokenizer(gold.strip(), add_special_tokens=False)["input_ids"]
        gold_ids = gold_ids + ([eos] if eos is not None else [])
        hb, lpb, gb = _gold_view(base, prompt, gold_ids, vocab)
        _, lpa, ga = _gold_view(assistant, prompt, gold_ids, vocab)
        g = torch.tensor(gold_ids)
        cols["hidden"].append(hb)
        cols["lp_base"].append(lpb)
        cols["lp_asst"].append(lpa)
        cols["weak"].append(((ga == g) & (gb != g)).float())
    return {k: torch.cat(v) for k, v in cols.items()}


# ---------------------------------------------------------------------------------------- training

class _Objective(nn.Module):
    """What the Trainer optimises: the head, with the weak-label or the marginal-likelihood loss."""

    def __init__(self, head: DeferralHead, kind: str, pos_weight: float):
        super().__init__()
        self.head, self.kind = head, kind
        self.register_buffer("pos_weight", torch.tensor(pos_weight))

    def forward(self, hidden, lp_base, lp_asst, weak):
        s = self.head(hidden)
        if self.kind == "weak":
            loss = F.binary_cross_entropy_with_logits(s, weak, pos_weight=self.pos_weight)
        else:
            loss = marginal_nll(s, lp_base, lp_asst).mean()
        return {"loss": loss}


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, feats: dict[str, torch.Tensor]):
        self.feats = feats

    def __len__(self):
        return len(self.feats["weak"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.feats.items()}


def train_head(head: DeferralHead, feats: dict[str, torch.Tensor], cfg: CoLLMConfig, seed: int) -> dict:
    """Weak-label initialisation, then the marginal likelihood, each a `Trainer` run; returns the
    losses before and after."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    data = _Tokens(feats)
    with torch.no_grad():
        before = float(marginal_nll(head(feats["hidden"]), feats["lp_base"], feats["lp_asst"]).mean())
    losses = {}
    for kind, epochs, lr in (("weak", cfg.init_epochs, cfg.init_lr), ("marginal", cfg.epochs, cfg.lr)):
        if epochs <= 0:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(
                output_dir=tmp, per_device_train_batch_size=cfg.batch_size, num_train_epochs=epochs,
                learning_rate=lr, lr_scheduler_type="linear", warmup_steps=cfg.warmup, weight_decay=0.0,
                save_strategy="no", report_to="none", logging_strategy="no", disable_tqdm=True, seed=seed,
                data_seed=seed, use_cpu=not torch.cuda.is_available(), remove_unused_columns=False,
                dataloader_num_workers=0)
            objective = _Objective(head, kind, cfg.pos_weight)
            trainer = Trainer(model=objective, args=args, train_dataset=data)
            trainer.remove_callback(PrinterCallback)  # it prints the metrics dict to stdout
            out = trainer.train()
            losses[kind] = float(out.training_loss)
    head.cpu()
    with torch.no_grad():
        after = float(marginal_nll(head(feats["hidden"]), feats["lp_base"], feats["lp_asst"]).mean())
    if not math.isfinite(after):
        raise FloatingPointError(f"co_llm: the deferral head's loss is {after} after training")
    return {"marginal_nll_before": before, "marginal_nll_after": after, "train_losses": losses,
            "tokens": len(data), "weak_positive": float(feats["weak"].mean())}


# ---------------------------------------------------------------------------------------- threshold

@torch.no_grad()
def defer_probs(head: DeferralHead, hidden: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(head(hidden).double())


def eta_for_rate(p: torch.Tensor, rate: float) -> float:
    """The threshold at which a fraction `rate` of these tokens defers (p > eta)."""
    if rate <= 0:
        return 1.0
    if rate >= 1:
        return 0.0
    k = round(rate * len(p))
    ps = p.sort(descending=True).values
    return float(ps[k]) if k < len(ps) else 0.0


def eta_youden(p: torch.Tensor, labels: torch.Tensor) -> float:
    """The threshold that maximises TPR - FPR against the weak labels (Youden's J)."""
    pos, neg = labels > 0.5, labels <= 0.5
    if not pos.any() or not neg.any():
        raise ValueError("Youden's J needs validation tokens of both labels (none or all would defer); "
                         "use co_llm.eta=rate")
    best, best_j = 1.0, -2.0
    for t in torch.unique(p).tolist() + [0.0]:
        j = float((p[pos] > t).double().mean() - (p[neg] > t).double().mean())
        if j > best_j:
            best, best_j = t, j
    return best


def choose_eta(cfg: CoLLMConfig, p: torch.Tensor, labels: torch.Tensor) -> float:
    if cfg.eta == "youden":
        return eta_youden(p, labels)
    if cfg.eta == "rate":
        return eta_for_rate(p, cfg.target_rate)
    try:
        eta = float(cfg.eta)
    except ValueError:
        raise ValueError(f"co_llm.eta must be 'youden', 'rate' or a number in [0, 1], got '{cfg.eta}'") from None
    if not 0 <= eta <= 1:
        raise ValueError(f"co_llm.eta must be in [0, 1], got {eta}")
    return eta


# ---------------------------------------------------------------------------------------- decoding

@dataclass
class CoOutput:
    text: str
    tokens: list[int]
    deferred: list[bool]  # per generated token: did the assistant write it

    @property
    def deferred_fraction(self) -> float:
        return sum(self.deferred) / len(self.deferred) if self.deferred else 0.0


@torch.inference_mode()
def co_generate(base: Stream, assistant: Stream, head: DeferralHead, prompts: list[str], eta: float,
                max_new_tokens: int, batch_size: int = 16, lazy: bool = True, desc: str | None = None
                ) -> tuple[list[CoOutput], dict]:
    """Greedy collaborative decoding. `lazy=False` recomputes the assistant's whole sequence at
    each of its turns instead of catching its cache up (for tests). Returns the outputs and counts
    of forwards per model."""
    vocab = check_vocab([base, assistant])
    stops = stop_ids(base)
    head = head.to(base.device)
    out: list[CoOutput | None] = [None] * len(prompts)
    counts = {"base_forwards": 0, "assistant_forwards": 0}
    for idx in tqdm(length_batches(prompts, batch_size), desc=desc, disable=desc is None, leave=False):
        texts = [prompts[i] for i in idx]
        sb = StreamState(base, base.encode(texts), vocab)
        sa = StreamState(assistant, assistant.encode(texts), vocab, use_cache=lazy)
        tokens: list[list[int]] = [[] for _ in idx]
        deferred: list[list[bool]] = [[] for _ in idx]
        done = torch.zeros(len(idx), dtype=torch.bool, device=base.device)
        for _ in range(max_new_tokens):
            h = sb.next_hidden()
            nxt = sb.logits_from(h).argmax(-1)
            defer = (torch.sigmoid(head(h).double()) > eta) & ~done
            if bool(defer.any()):  # the assistant reads everything since its last turn, once, for the batch
                nxt = torch.where(defer, sa.next_logits().argmax(-1).to(nxt.device), nxt)
            for r, t in enumerate(nxt.tolist()):
                if not done[r]:
                    tokens[r].append(t)
                    deferred[r].append(bool(defer[r]))
                    done[r] = t in stops
            if bool(done.all()):
                break
            sb.append(nxt)
            sa.append(nxt)
        counts["base_forwards"] += sb.forwards
        counts["assistant_forwards"] += sa.forwards
        for r, i in enumerate(idx):
            out[i] = CoOutput(decode(base.tokenizer, tokens[r], stops), tokens[r], deferred[r])
    return out, counts  # type: ignore[return-value]


class CoLLMGenerator:
    """`Generator` protocol over `co_generate`; `last` holds the outputs (with deferral masks) of
    the latest call. Greedy only, as in the paper."""

    def __init__(self, base: Stream, assistant: Stream, head: DeferralHead, eta: float):
        self.base, self.assistant, self.head, self.eta = base, assistant, head, eta
        self.last: list[CoOutput] = []
        self.counts: dict = {}
        check_vocab([base, assistant])

    def generate(self, prompts: list[str], sampling: SamplingConfig, seed: int = 0, desc: str | None = None,
                 adapters: list[int] | None = None) -> list[str]:
        if adapters is not None:
            raise ValueError("CoLLMGenerator: per-prompt adapters are not supported")
        if sampling.temperature > 0:
            raise ValueError("CoLLMGenerator decodes greedily (Co-LLM inference); set temperature=0")
        self.last, self.counts = co_generate(self.base, self.assistant, self.head, prompts, self.eta,
                                             sampling.max_new_tokens, sampling.batch_size, desc=desc)
        return [o.text for o in self.last]
