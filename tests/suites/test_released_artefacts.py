"""Against the SEAL authors' released artefacts (REFERENCE 1.1): the self-edit prompt template read
from their files reproduces every record's prompt, and M-step rows built from their exact M-step
pairs are prompt tokens + completion tokens + EOS with the loss on the completion only. Skipped
where ../shared/data/seal is absent."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SHARED

SYNTHETIC = SHARED / "general-knowledge" / "data" / "synthetic_data"
TRAIN = SYNTHETIC / "train" / "iter0_train.json"
EM_SFT = SYNTHETIC / "EM_SFT" / "sft_best1of5_iter0.jsonl"

pytestmark = pytest.mark.skipif(not (TRAIN.is_file() and EM_SFT.is_file()),
                                reason=f"released SEAL artefacts absent ({SYNTHETIC})")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def released_pairs() -> list[dict]:
    return [json.loads(line) for line in EM_SFT.read_text().splitlines() if line.strip()]


def test_template_from_file_reproduces_every_released_prompt(tmp_path):
    from seal.data.sources import DataError, load_seal_file
    from seal.domains.knowledge.self_edit import SelfEditConfig, self_edit_prompt, template_from_file

    records = json.loads(TRAIN.read_text())
    template = template_from_file(str(TRAIN))
    assert "{title}" in template and "{context}" in template
    assert records[0]["title"] not in template and records[0]["context"] not in template
    assert all(template.format(title=r["title"], context=r["context"]) == r["prompt"] for r in records)
    cfg = SelfEditConfig(template="from_file", template_file=str(TRAIN))  # self_edit.template=from_file
    prompts = [self_edit_prompt(p, "implications", cfg) for p in load_seal_file(TRAIN)]
    assert prompts == [r["prompt"] for r in records]
    # the released M-step pairs are (this prompt, kept completion) pairs
    assert {p["prompt"] for p in released_pairs()} <= set(prompts)
    # a file whose records do not share one template is refused, naming the record
    bad = [dict(r) for r in records[:3]]
    bad[2]["prompt"] = bad[2]["prompt"].replace("Implications:", "Consequences:")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="record 2"):
        template_from_file(str(path))


def check_rows(tok, pairs, rows, bos: int | None):
    from seal.models.loading import prompt_ids

    assert len(rows) == len(pairs)
    for pair, row in zip(pairs, rows):
        ids, mask = row["input_ids"], row["completion_mask"]
        prompt = tok(pair["prompt"], add_special_tokens=False)["input_ids"]
        completion = tok(pair["completion"], add_special_tokens=False)["input_ids"]
        head = [bos] if bos is not None else []
        assert ids == head + prompt + completion + [tok.eos_token_id]
        assert ids[:len(head) + len(prompt)] == prompt_ids(tok, pair["prompt"])  # as sampling fed the prompt
        assert mask == [0] * (len(head) + len(prompt)) + [1] * (len(completion) + 1)
        # the loss covers the completion text exactly, unstripped, and its EOS
        assert tok.decode([t for t, m in zip(ids, mask) if m]) == pair["completion"] + tok.eos_token
        assert tok.decode(ids[len(head):len(head) + len(prompt)]) == pair["prompt"]
        if bos is not None:
            assert ids[0] == bos and ids.count(bos) == 1
        else:
            assert tok.bos_token_id is None or ids[0] != tok.bos_token_id


def test_m_step_rows_from_the_released_pairs_smollm2_tokenizer():
    """SmolLM2 (a tokenizer that adds no BOS): rows are exactly prompt + completion + EOS."""
    from transformers import AutoTokenizer

    from seal.models.loading import _embedded_folder, bos_id
    from seal.rl.m_step import m_step_examples

    tok = AutoTokenizer.from_pretrained(str(_embedded_folder("smollm2-135m")))
    assert bos_id(tok) is None
    pairs = released_pairs()
    rows, dropped = m_step_examples(tok, pairs, max_length=4096)
    assert not dropped
    check_rows(tok, pairs, rows, bos=None)


def test_m_step_rows_from_the_released_pairs_bos_tokenizer():
    """A tokenizer that adds a BOS (as Llama 3's): exactly one BOS, first."""
    from seal.models.tiny import tiny_tokenizer
    from seal.rl.m_step import m_step_examples

    tok = tiny_tokenizer(add_bos=True)
    pairs = released_pairs()[:10]
    rows, dropped = m_step_examples(tok, pairs, max_length=100_000)
    assert not dropped
    check_rows(tok, pairs, rows, bos=tok.bos_token_id)
    # too long for max_length: left out and reported, never truncated
    n = len(rows[0]["input_ids"])
    rows, dropped = m_step_examples(tok, pairs[:1], max_length=n - 1)
    assert rows == [] and dropped == [{"pair": 0, "tokens": n, "why": f"{n} tokens > m_step.max_length={n - 1}"}]
