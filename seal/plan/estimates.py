"""What a run will cost, from the architecture alone: parameter counts, LoRA adapter sizes, and
memory and time per GPU from FLOPs. `seal ... plan=true` uses it to check a paper-scale run on a
laptop before a GPU hour is spent; nothing here loads weights.

The architecture comes from, in order: the tiny test models' own config, a local folder's (or the
Hugging Face cache's) `config.json`, or a small table of the paper models' public configs, so the
plan works offline for `Qwen/Qwen2.5-7B` and `meta-llama/Llama-3.2-1B-Instruct`.

The estimates are first-order and say so in the plan: training ~6 N FLOPs per token (4 N with a
frozen base: no weight gradients), generation memory-bound (every decode step reads the weights
once per batch), activations ~34 x tokens x hidden bytes per layer (bf16, flash attention).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    head_dim: int | None = None
    source: str = ""

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection of one decoder layer, by PEFT target name."""
        h, kv = self.hidden, self.kv_heads * self.hd
        return {"q_proj": (h, self.heads * self.hd), "k_proj": (h, kv), "v_proj": (h, kv),
                "o_proj": (self.heads * self.hd, h), "gate_proj": (h, self.intermediate),
                "up_proj": (h, self.intermediate), "down_proj": (self.intermediate, h)}

    @property
    def params(self) -> int:
        shapes = self.module_shapes()
        per_layer = sum(i * o for i, o in shapes.values()) + 2 * self.hidden
        if self.qkv_bias:
            per_layer += sum(shapes[m][1] for m in ("q_proj", "k_proj", "v_proj"))
        return self.layers * per_layer + self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def lora_params(self, targets: list[str], r: int) -> int:
        shapes = self.module_shapes()
        unknown = [t for t in targets if t not in shapes]
        if unknown:
            raise ValueError(f"target modules {unknown} are not projections of this architecture "
                             f"({', '.join(shapes)})")
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


# The public config.json values of the paper models (REFERENCE 1.1, 1.2) and the embedded default.
KNOWN: dict[str, Arch] = {
    "Qwen/Qwen2.5-7B": Arch(3584, 18944, 28, 28, 4, 152064, False, qkv_bias=True),
    "Qwen/Qwen2.5-7B-Instruct": Arch(3584, 18944, 28, 28, 4, 152064, False, qkv_bias=True),
    "Qwen/Qwen2.5-3B": Arch(2048, 11008, 36, 16, 2, 151936, True, qkv_bias=True),
    "meta-llama/Llama-3.2-1B-Instruct": Arch(2048, 8192, 16, 32, 8, 128256, True),
    "meta-llama/Llama-3.2-1B": Arch(2048, 8192, 16, 32, 8, 128256, True),
    "smollm2-135m": Arch(576, 1536, 30, 9, 3, 49152, True),
}


def _from_config(cfg: dict, source: str) -> Arch:
    return Arch(hidden=cfg["hidden_size"], intermediate=cfg["intermediate_size"], layers=cfg["num_hidden_layers"],
                heads=cfg["num_attention_heads"], kv_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
                vocab=cfg["vocab_size"], tied=bool(cfg.get("tie_word_embeddings", False)),
                qkv_bias=cfg.get("model_type") == "qwen2" or bool(cfg.get("attention_bias", False)),
                head_dim=cfg.get("head_dim"), source=source)


def architecture(name: str) -> Arch | None:
    """The model's architecture without loading weights, or None when nothing here describes it."""
    from dataclasses import replace

    from seal.models.loading import TINY

    if name in TINY:
        from seal.models.tiny import tiny_config

        return _from_config(tiny_config(add_bos=name.endswith("-bos")).to_dict(), "built in (tests)")
    path = Path(name)
    if (path / "config.json").is_file():
        return _from_config(json.loads((path / "config.json").read_text()), f"{path / 'config.json'}")
    if name in KNOWN:
        return replace(KNOWN[name], source="seal's table of public configs (seal/plan/estimates.py)")
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(name, local_files_only=True)
        return _from_config(cfg.to_dict(), "the Hugging Face cache")
    except Exception:  # noqa: BLE001 - not cached here: the plan says so
        return None


@dataclass(frozen=True)
class GPU:
    name: str = "H100 80GB SXM"
    memory_gb: float = 80.0
    bf16_tflops: float = 989.0  # dense peak
    mfu: float = 0.35  # share of the peak a training step reaches
    hbm_tbps: float = 3.35


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def train_seconds(n_params: int, tokens: float, gpu: GPU, frozen_base: bool, steps: float = 0,
                  bytes_per_param: int = 2) -> float:
    """Training over `tokens` tokens in `steps` optimizer steps: the larger of the FLOP time (4 N per
    token with a frozen base, 6 N for full fine-tuning) and the memory floor (each step reads the
    weights about three times: forward, and backward through activations and weights)."""
    flops = (4 if frozen_base else 6) * n_params * tokens / (gpu.bf16_tflops * 1e12 * gpu.mfu)
    floor = steps * 3 * n_params * bytes_per_param / (gpu.hbm_tbps * 1e12)
    return max(flops, floor)


def generate_seconds(n_params: int, prompts: int, new_tokens: int, batch: int, gpu: GPU, bytes_per_param: int = 2
                     ) -> float:
    """Batched decoding, memory-bound: every step of a batch reads all weights once."""
    batches = ceil_div(prompts, max(batch, 1))
    return batches * new_tokens * n_params * bytes_per_param / (gpu.hbm_tbps * 1e12)


def memory_gb(arch: Arch, tokens_per_step: int, lora_params: int, adapters: int = 1, full_finetune: bool = False,
              bytes_per_param: int = 2) -> dict[str, float]:
    """Peak memory of a training step, by part (GB): weights, trainable state (bf16 weights/grad +
    fp32 Adam moments and master copy for full fine-tuning; fp32 weight, grad and two moments for
    LoRA), activations."""
    weights = arch.params * bytes_per_param
    state = arch.params * (2 + 4 + 4 + 4) if full_finetune else lora_params * adapters * 16
    acts = 34 * tokens_per_step * arch.hidden * arch.layers
    parts = {"weights": weights, "trainable state": state, "activations": acts}
    out = {k: v / 2**30 for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out
