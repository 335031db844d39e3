"""A short fingerprint of a loaded model's weights and tokenizer, to key caches of what a model does
(e.g. which locality questions it answers). Weights are summarised, not hashed byte by byte: per tensor
its name, shape, dtype, sum, absolute sum and 16 evenly spaced values, so 135M parameters cost one
reduction pass on their own device. Any training step changes the sums; two loads of the same weights
give the same fingerprint."""

from __future__ import annotations

import hashlib
import json

import torch

_SAMPLES = 16


def _config_text(model) -> str:
    config = getattr(model, "config", None)
    if config is None:
        return ""
    d = config.to_dict()
    for key in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        d.pop(key, None)  # where and how it was loaded, not what it is
    return json.dumps(d, sort_keys=True, default=str)


def _tokenizer_text(tok) -> str:
    if tok is None:
        return ""
    vocab = sorted(tok.get_vocab().items())
    return json.dumps([len(tok), vocab, getattr(tok, "chat_template", None), tok.bos_token, tok.eos_token],
                      default=str)


@torch.no_grad()
def model_fingerprint(model, tok=None) -> str:
    """16 hex digits naming the model's weights, config and (if given) tokenizer."""
    h = hashlib.sha256()
    h.update(_config_text(model).encode())
    h.update(_tokenizer_text(tok).encode())
    stats = []
    for name, p in model.named_parameters():
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype};".encode())
        flat = p.detach().reshape(-1)
        if flat.numel() == 0:
            continue
        # float64: in float32 the last index of a tensor over 2**24 values rounds past its end
        idx = torch.linspace(0, flat.numel() - 1, min(_SAMPLES, flat.numel()), dtype=torch.float64,
                             device=flat.device).long().clamp_(max=flat.numel() - 1)
        stats.append(torch.cat([flat.double().sum().reshape(1), flat.double().abs().sum().reshape(1),
                                flat[idx].double()]))
    if stats:
        # rounded: a reduction may differ in its last bits between devices or kernels
        h.update(" ".join(f"{v:.6e}" for v in torch.cat(stats).cpu().tolist()).encode())
    return h.hexdigest()[:16]
