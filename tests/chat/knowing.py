"""A tiny base model that knows a few general-knowledge questions of the locality bank, saved as a model
folder `seal-chat` loads (`model.name=<folder> model.chat=false`): the gate's locality check then has
base-known questions to lose, and a learn that bleeds has right answers to overwrite."""

from __future__ import annotations

from pathlib import Path

from seal.chat.edit_gate import locality_sample, split_bank
from seal.chat.gate import GateConfig
from seal.eval.edit_eval import EditEvalConfig, question_prompts
from seal.eval.locality_bank import BankRecord, load_bank
from seal.models.teaching import teach
from seal.models.tiny import tiny_model_and_tokenizer


def taught_questions(g: GateConfig = GateConfig(), capitals: int = 3, others: int = 2) -> list[BankRecord]:
    """Questions of the gate's locality sample to teach: `capitals` capital cities, then `others` of other
    relations, each answer different."""
    sample = locality_sample(load_bank(), g)
    caps = [r for r in sample if r.relation == "capital_of"][:capitals]
    seen = {r.answer for r in caps}
    rest = []
    for r in sample:
        if r.relation not in ("capital_of",) and r.answer not in seen and len(rest) < others:
            rest.append(r)
            seen.add(r.answer)
    return caps + rest


def replay_questions(n: int = 4) -> list[BankRecord]:
    """The first `n` questions of the bank's replay part (the `distill` source rehearses the answers)."""
    return split_bank(load_bank())[1][:n]


def train_pairs(model, tok, pairs: list[tuple[str, str]], steps: int = 150, lr: float = 3e-3, seed: int = 0):
    """Fine-tune all weights so that each question, asked as the gate asks a base model, is answered."""
    prompts = question_prompts(tok, [q for q, _ in pairs], EditEvalConfig(), chat=False)
    return teach(model, tok, prompts, [a for _, a in pairs], steps=steps, lr=lr, seed=seed)


def knowing_model(folder: Path, records: list[BankRecord] | None = None, seed: int = 0, add_bos: bool = True) -> Path:
    """Save a tiny model taught `records` (default: `taught_questions()` and `replay_questions()`) to `folder`."""
    records = records if records is not None else taught_questions() + replay_questions()
    model, tok = tiny_model_and_tokenizer(seed=seed, add_bos=add_bos)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    train_pairs(model, tok, [(r.question, r.answer) for r in records], seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder
