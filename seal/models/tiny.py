"""A tiny randomly initialised Llama and a matching byte-level BPE tokenizer, built in-process.

Tests and smoke runs use it (`model.name=tiny-random`): it exercises the real code paths (chat
template, LoRA targets, padding, generation) in milliseconds and needs no download. Weights are
seeded, so two builds are identical.
"""

from __future__ import annotations

import torch

CHATML = (
    "{{ bos_prefix }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Topic: Answer the question directly and concisely. Question: What is the capital?",
    "Read the passage and list implications derived directly or indirectly from it.",
    "Rewrite the passage in several different ways, one per line.",
    "Write questions and answers about the passage. Q: Who founded it? A: nobody",
    "In 1874 the town of Velmora was founded by Ansel Quorrin on the banks of the Tarvik.",
    "0123456789 yes no true false implications passage context title",
]


BOS = "<|begin_of_text|>"


def tiny_tokenizer(vocab_size: int = 512, add_bos: bool = False):
    """A byte-level BPE tokenizer trained on a few sentences. `add_bos=True`: it prepends BOS to every
    text it encodes and its chat template writes the BOS text too, as Llama 3's tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + ([BOS] if add_bos else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_CORPUS * 4, trainer=trainer)
    if add_bos:
        bos_id = core.token_to_id(BOS)
        core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                            special_tokens=[(BOS, bos_id)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS if add_bos else "<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|im_end|>", unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML.replace("{{ bos_prefix }}", "{{ bos_token }}" if add_bos else "")
    return tok


def tiny_config(hidden: int = 64, layers: int = 2, add_bos: bool = False, tok=None):
    from transformers import LlamaConfig

    tok = tok or tiny_tokenizer(add_bos=add_bos)
    return LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )


def tiny_model_and_tokenizer(seed: int = 0, hidden: int = 64, layers: int = 2, add_bos: bool = False):
    from transformers import LlamaForCausalLM

    tok = tiny_tokenizer(add_bos=add_bos)
    cfg = tiny_config(hidden, layers, tok=tok)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model, tok
