"""Shared fixtures: tiny random models (built fresh per test: the inner loop wraps them in place)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "seal"


@pytest.fixture(autouse=True)
def _drop_run_log_files():
    """What a `seal` or `seal-chat` process would leave until it exits: TQDM_DISABLE (seal-chat) is restored,
    and a run started in-process leaves Hydra's handlers on the root logger (`cli.log`, and the console
    stream, which under pytest is a capture that closes with the test), as one `seal` process would until
    it exits; drop them after the test, so a later test never logs into a closed stream or removed folder."""
    loggers = (logging.getLogger(), logging.getLogger("seal"))
    before = {id(h) for lg in loggers for h in lg.handlers}
    tqdm_disable = os.environ.get("TQDM_DISABLE")  # seal-chat's main sets it for its process
    yield
    if tqdm_disable is None:
        os.environ.pop("TQDM_DISABLE", None)
    else:
        os.environ["TQDM_DISABLE"] = tqdm_disable
    for lg in loggers:
        for h in list(lg.handlers):
            if id(h) not in before and not type(h).__module__.startswith("_pytest"):
                lg.removeHandler(h)
                if isinstance(h, logging.FileHandler):
                    h.close()


@pytest.fixture
def tiny():
    from seal.models.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    model.eval()
    return model, tok


def distinct_model(seed: int):
    """A tiny model with its own untied random output layer. With tied embeddings a random tiny
    model only repeats its last token, so every such model gives the same output and multi-model
    decoding tests could not fail."""
    from seal.models.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=gen))
    return model.eval(), tok


def compose(*overrides: str):
    """The Hydra config exactly as `seal <overrides>` would build it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import seal.cli  # noqa: F401  (registers the run-dir resolver)

    with initialize_config_dir(config_dir=str(REPO / "seal" / "configs"), version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides))
