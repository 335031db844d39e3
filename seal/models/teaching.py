"""Teach a tiny model a few question/answer pairs: a base model that knows something, for tests and the
`--tiny` modes of scripts, so that forgetting (locality) can be measured on it."""
from __future__ import annotations

import torch

from seal.models.loading import prompt_ids


def teach(model, tok, prompts: list[str], answers: list[str], steps: int = 150, lr: float = 3e-3, seed: int = 0):
    """Fine-tune all weights of a tiny model so that each prompt is answered with its answer (" <answer>\\n",
    loss on the answer only): a base model that knows something, for tests and `--tiny` script modes to lose."""
    torch.manual_seed(seed)
    rows, labels = [], []
    for prompt_text, answer_text in zip(prompts, answers):
        prompt = prompt_ids(tok, prompt_text)
        answer = tok(" " + answer_text + "\n", add_special_tokens=False)["input_ids"]
        rows.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, rows))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    lab = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
