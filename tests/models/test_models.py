"""Model loading and prompt formatting: chat template for instruct models, raw text for base models."""

from __future__ import annotations

from seal.models.loading import ModelConfig, format_prompt, load_model, max_context, uses_chat


def test_tiny_random_loads_with_a_chat_template():
    model, tok = load_model(ModelConfig(name="tiny-random", device="cpu"))
    assert uses_chat(ModelConfig(name="tiny-random"), tok)
    assert not uses_chat(ModelConfig(name="tiny-random", chat=False), tok)
    assert tok.pad_token_id is not None and not model.training
    assert max_context(ModelConfig(), model) == model.config.max_position_embeddings
    assert max_context(ModelConfig(max_context=64), model) == 64


def test_chat_and_raw_prompts(tiny):
    _, tok = tiny
    chat = format_prompt(tok, "What is Velmora?", chat=True)
    assert chat.startswith("<|im_start|>user\nWhat is Velmora?<|im_end|>") and chat.endswith("<|im_start|>assistant\n")
    assert format_prompt(tok, "What is Velmora?", chat=False) == "What is Velmora?"
    with_system = format_prompt(tok, "hi", chat=True, system_prompt="Be brief.")
    assert with_system.startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_local_folder_loads_as_safetensors(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded, tok2 = load_model(ModelConfig(name=str(tmp_path), device="cpu"))
    assert tok2.chat_template == tok.chat_template
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert (a == b).all(), n
