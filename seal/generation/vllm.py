"""The vLLM engine for `backend=vllm`: self-edit sampling and multi-LoRA QA scoring on a GPU.

It runs inside `seal.generation.engine_worker`'s worker process (so it can be restarted on a new policy with
its GPU memory really freed) and is imported only when selected. Adapters arrive as
`(name, id, path)` triples and become `LoRARequest`s; a whole call, mixing the base model and up to
`max_loras` adapters, is one `LLM.generate`. Prompts go in as token ids from `seal.models.loading.prompt_ids`,
exactly as the transformers backend encodes them, so both backends see the same tokens.
"""

from __future__ import annotations

import importlib.util

from seal.generation.errors import BackendError

VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def max_lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts that holds adapters of rank r."""
    for allowed in VLLM_RANKS:
        if r <= allowed:
            return allowed
    raise BackendError(f"inner_loop.lora_r={r}: vLLM serves LoRA ranks up to {VLLM_RANKS[-1]}; "
                       "lower the rank or use backend=hf")


def require_vllm() -> None:
    """Fail early, in the parent process, with the fix when vLLM cannot run here."""
    if importlib.util.find_spec("vllm") is None:
        raise BackendError("backend=vllm needs the vllm package, which is not installed: pip install -e '.[vllm]' "
                           "on a CUDA machine (vLLM has no CPU build), or use backend=hf")
    import torch

    if not torch.cuda.is_available():
        raise BackendError("backend=vllm needs a CUDA GPU and torch sees none (torch.cuda.is_available() is "
                           "False); use backend=hf on this machine")


class VLLMEngine:
    def __init__(self, model_path: str, *, max_loras: int, max_lora_rank: int, gpu_memory_utilization: float,
                 dtype: str = "auto", seed: int = 0, max_model_len: int | None = None, enforce_eager: bool = False,
                 enable_sleep_mode: bool = False, **_):
        from vllm import LLM

        self.llm = LLM(model=model_path, tokenizer=model_path, enable_lora=True, max_loras=max_loras,
                       max_lora_rank=max_lora_rank, gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                       seed=seed, max_model_len=max_model_len, enforce_eager=enforce_eager,
                       enable_sleep_mode=enable_sleep_mode, trust_remote_code=False)
        self.tok = self.llm.get_tokenizer()
        self.sleep_mode = enable_sleep_mode

    def generate(self, prompts: list[str], sampling: dict, seed: int, loras: list | None, with_ids: bool = False
                 ) -> list:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        greedy = sampling["temperature"] <= 0
        # one seed per request: the same seed on k copies of one prompt would give k equal samples
        params = [SamplingParams(max_tokens=sampling["max_new_tokens"], temperature=0.0 if greedy else sampling["temperature"],
                                 top_p=1.0 if greedy else sampling["top_p"], seed=seed + i, skip_special_tokens=True)
                  for i in range(len(prompts))]
        from seal.models.loading import prompt_ids

        inputs = [{"prompt_token_ids": prompt_ids(self.tok, p)} for p in prompts]
        requests = None if loras is None else [None if x is None else LoRARequest(x[0], x[1], x[2]) for x in loras]
        outs = self.llm.generate(inputs, params, lora_request=requests, use_tqdm=False)
        if with_ids:
            return [(o.outputs[0].text.strip(), self._sampled_ids(o.outputs[0])) for o in outs]
        return [o.outputs[0].text.strip() for o in outs]

    def _sampled_ids(self, out) -> list[int]:
        """The ids a sequence drew, ending with its EOS when it stopped on one, as HFGenerator's do
        (`finish_reason == "stop"` with no `stop_reason` is the EOS case; versions differ on whether
        `token_ids` already holds it)."""
        ids = list(out.token_ids)
        eos = self.tok.eos_token_id
        if out.finish_reason == "stop" and getattr(out, "stop_reason", None) is None and (not ids or ids[-1] != eos):
            ids.append(eos)
        return ids

    def sleep(self) -> None:
        if self.sleep_mode:
            self.llm.sleep(level=1)  # weights to CPU, KV cache dropped: the GPU is the trainer's

    def wake_up(self) -> None:
        if self.sleep_mode:
            self.llm.wake_up()
