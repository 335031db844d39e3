"""The M-step: SFT of the policy on the kept (prompt, self-edit) pairs, loss on the completion only,
LoRA merged (or full fine-tuning), saved as safetensors. Inline with TRL's SFTTrainer, or in worker
processes under torchrun / accelerate (`seal.rl.m_step_main`).
"""

from __future__ import annotations

import gc
import os
import random
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from seal.infra.config import ConfigError, require_at_least
from seal.inner_loop.schedules import TrainerScheduler
from seal.models.loading import ModelConfig, load_model, prompt_ids


@dataclass(frozen=True)
class MStepConfig:
    full_finetune: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lr: float = 3e-4
    epochs: int = 2
    effective_batch: int = 10  # examples per optimizer step, whatever the number of processes (REFERENCE 1.1)
    batch_size: int = 1  # examples per forward on one process; gradient accumulation makes up the rest
    scheduler: TrainerScheduler = "linear"  # a transformers scheduler name (seal.inner_loop.schedules)
    # its own arguments: the Trainer's lr_scheduler_kwargs (e.g. num_decay_steps for warmup_stable_decay)
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    warmup_ratio: float = 0.0
    max_length: int = 2048  # a longer example is left out and recorded, never truncated
    # where it runs: inline (this process, one device) | torchrun (`nproc` processes on this node, DDP; gloo
    # on CPU) | accelerate (`accelerate launch` with `accelerate_config`: FSDP or DeepSpeed for 7B policies)
    launcher: Literal["inline", "torchrun", "accelerate"] = "inline"
    nproc: int = 1
    accelerate_config: str | None = None  # e.g. seal/configs/accelerate/fsdp_7b.yaml for a 7B policy on 8 GPUs


def validate_m_step(cfg: MStepConfig) -> None:
    """Checked before the first round, not after hours of E-step."""
    if cfg.launcher not in ("inline", "torchrun", "accelerate"):
        raise ConfigError(f"m_step.launcher must be inline, torchrun or accelerate, got '{cfg.launcher}'")
    if cfg.nproc < 1:
        raise ConfigError(f"m_step.nproc must be at least 1, got {cfg.nproc}")
    if cfg.accelerate_config and not Path(cfg.accelerate_config).is_file():
        raise ConfigError(f"m_step.accelerate_config: no such file '{cfg.accelerate_config}'")
    require_at_least(cfg, "m_step", ("effective_batch", "batch_size", "epochs", "max_length"), 1)


def processes(cfg: MStepConfig) -> int:
    """How many training processes the configured launcher starts."""
    if cfg.launcher == "inline":
        return 1
    if cfg.launcher == "accelerate" and cfg.accelerate_config:
        import yaml

        n = (yaml.safe_load(Path(cfg.accelerate_config).read_text()) or {}).get("num_processes")
        return int(n) if n else cfg.nproc
    return cfg.nproc


@dataclass(frozen=True)
class StepLayout:
    """How one optimizer step of `effective` examples is spread over `processes` x `batch_size` x
    `grad_accum` slots; the `padding` slots hold an empty example with no loss tokens, so the step's
    gradient is the token mean over exactly `effective` real examples whatever the process count."""
    effective: int
    processes: int
    batch_size: int
    grad_accum: int

    @property
    def slots(self) -> int:
        return self.processes * self.batch_size * self.grad_accum

    @property
    def padding(self) -> int:
        return self.slots - self.effective


def step_layout(cfg: MStepConfig, n_processes: int) -> StepLayout:
    per_forward = cfg.batch_size * n_processes
    return StepLayout(cfg.effective_batch, n_processes, cfg.batch_size, -(-cfg.effective_batch // per_forward))


def optimizer_steps(n_examples: int, cfg: MStepConfig) -> int:
    """Optimizer steps of an M-step on n examples: ceil(n / effective_batch) per epoch."""
    return cfg.epochs * -(-n_examples // cfg.effective_batch)


def m_step_examples(tok, pairs: list[dict], max_length: int) -> tuple[list[dict], list[dict]]:
    """Token rows {input_ids, completion_mask} for the M-step, and the pairs left out as too long.

    A pair sampled by the policy carries `completion_ids`, the exact tokens it drew: the row is the
    prompt's tokens as sampling encoded them (`seal.models.loading.prompt_ids`) followed by those ids, so the
    policy is cloned on what it produced, not on a re-tokenized or stripped text. A text pair (a
    released M-step file, an older record) is prompt tokens + completion tokens + EOS. The loss is on
    the completion (and its EOS) only.
    """
    rows, dropped = [], []
    for i, pair in enumerate(pairs):
        prompt = prompt_ids(tok, pair["prompt"])
        if pair.get("completion_ids") is not None:
            completion = list(pair["completion_ids"])
        else:
            completion = tok(pair["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = prompt + completion
        if not completion or len(ids) > max_length:
            dropped.append({"pair": i, "tokens": len(ids), "why": "no completion tokens" if not completion else
                            f"{len(ids)} tokens > m_step.max_length={max_length}"})
            continue
        rows.append({"input_ids": ids, "completion_mask": [0] * len(prompt) + [1] * len(completion)})
    return rows, dropped


def step_ordered(rows: list[dict], layout: StepLayout, epochs: int, seed: int, pad_id: int) -> list[dict]:
    """Every epoch's rows in a seeded order, cut into optimizer steps of `layout.effective` rows and
    each step padded to `layout.slots` with empty rows. Trained in this order (no sampler shuffle),
    the step contents are the same for any number of processes: a step is a contiguous block of
    `slots` rows, and each process takes its share of every block."""
    empty = {"input_ids": [pad_id], "completion_mask": [0]}
    rng = random.Random(seed)
    out = []
    for _ in range(epochs):
        order = rng.sample(range(len(rows)), len(rows))
        for s in range(0, len(order), layout.effective):
            step = [rows[i] for i in order[s:s + layout.effective]]
            out += step + [empty] * (layout.slots - len(step))
    return out


def m_step(policy_path: str, model_cfg: ModelConfig, pairs: list[dict], cfg: MStepConfig, seed: int,
           out: Path, callbacks=(), log: Path | None = None) -> dict:
    """SFT the policy on (prompt, completion) pairs, loss on the completion only; merge; save to `out`.
    With `cfg.launcher` torchrun or accelerate it runs in worker processes (`seal.rl.m_step_main`),
    whose output is kept in `log` (default: beside `out`). `callbacks` go to the Trainer of an
    inline M-step (the run's wandb logging, `seal.infra.tracking.Tracker.trainer_callbacks`)."""
    if cfg.launcher != "inline":
        return _launch_m_step(policy_path, model_cfg, pairs, cfg, seed, out, log or out.parent / f"{out.name}.log")
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model, tok = load_model(replace(model_cfg, name=policy_path))
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate in launched processes
    layout = step_layout(cfg, world)
    rows, dropped = m_step_examples(tok, pairs, cfg.max_length)
    if not rows:
        raise ConfigError(f"m_step: none of the {len(pairs)} pairs can be trained on: {dropped[:3]}")
    data = step_ordered(rows, layout, cfg.epochs, seed, tok.pad_token_id)
    work = out.parent / f".{out.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    args = SFTConfig(
        output_dir=str(work / "trainer"), num_train_epochs=1, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=layout.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.scheduler,
        lr_scheduler_kwargs=dict(cfg.scheduler_kwargs),
        warmup_steps=cfg.warmup_ratio, max_length=None, completion_only_loss=True,
        train_sampling_strategy="sequential", average_tokens_across_devices=True,
        gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none", seed=seed,
        data_seed=seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=False, dataloader_num_workers=0,
        # TRL turns bf16 autocast on when it is left unset; on a CPU without bf16 units that made each
        # step ~30x slower (measured: 110 s for 354 tokens). Follow the model's own dtype instead.
        bf16=next(model.parameters()).dtype == torch.bfloat16 and torch.cuda.is_available(), fp16=False,
    )
    if world == 1:
        # one process sees every GPU of the host; transformers would wrap the model in DataParallel and
        # multiply the batch by the GPU count. An inline M-step trains on one device.
        _ = args.device
        args._n_gpu = min(args._n_gpu, 1)
    peft_config = None if cfg.full_finetune else LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tok,
                         peft_config=peft_config, callbacks=list(callbacks))
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    acc = trainer.accelerator
    if acc.num_processes > 1:
        # sharded (FSDP / DeepSpeed) or replicated (DDP) weights: the Trainer gathers them into one folder,
        # then the main process alone merges and writes the policy
        trainer.save_model(str(work / "trained"))
        acc.wait_for_everyone()
        if acc.is_main_process:
            _merge_saved(policy_path, model_cfg, work / "trained", cfg.full_finetune, tok, work / "policy")
    else:
        trained = trainer.model
        merged = trained if cfg.full_finetune else trained.merge_and_unload()
        merged.save_pretrained(work / "policy", safe_serialization=True)
        tok.save_pretrained(work / "policy")
    if acc.is_main_process:
        if out.exists():
            shutil.rmtree(out)
        os.replace(work / "policy", out)  # the policy folder appears only when complete
        shutil.rmtree(work, ignore_errors=True)
    del trainer, model
    gc.collect()
    return {"steps": result.global_step, "train_loss": result.training_loss, "losses": losses,
            "pairs": len(pairs), "trained_pairs": len(rows), "dropped": dropped, "processes": acc.num_processes,
            "effective_batch": layout.effective, "grad_accum": layout.grad_accum, "padding_slots": layout.padding}


def _merge_saved(policy_path: str, model_cfg: ModelConfig, trained: Path, full: bool, tok, dest: Path) -> None:
    """The policy from a Trainer-saved folder: full weights as they are, or LoRA merged into the base."""
    from peft import PeftModel

    if full:
        model, _ = load_model(replace(model_cfg, name=str(trained)))
    else:
        base, _ = load_model(replace(model_cfg, name=policy_path))
        model = PeftModel.from_pretrained(base, str(trained)).merge_and_unload()
    model.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


def _launch_m_step(policy_path: str, model_cfg: ModelConfig, pairs: list[dict], cfg: MStepConfig, seed: int,
                   out: Path, log_path: Path) -> dict:
    """Run the M-step in `cfg.nproc` torchrun processes or under `accelerate launch`; the job (policy by
    path, pairs, settings) goes by a JSON file and the new policy comes back as the folder `out`. The
    processes' output is kept in `log_path`, whether they succeed or fail."""
    import dataclasses
    import json
    import subprocess
    import sys

    job_dir = out.parent / f".{out.name}.job"
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    job = {"policy": policy_path, "model": dataclasses.asdict(model_cfg),
           "m_step": dataclasses.asdict(replace(cfg, launcher="inline")), "pairs": pairs, "seed": seed,
           "out": str(out.resolve()), "stats": str((job_dir / "stats.json").resolve())}
    (job_dir / "job.json").write_text(json.dumps(job))
    if cfg.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}"]
    elif cfg.launcher == "accelerate":
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        cmd += ["--config_file", cfg.accelerate_config] if cfg.accelerate_config else ["--num_processes", str(cfg.nproc)]
    else:
        raise ConfigError(f"m_step.launcher must be inline, torchrun or accelerate, got '{cfg.launcher}'")
    cmd += ["-m", "seal.rl.m_step_main", str(job_dir / "job.json")]
    env = {**os.environ, "WANDB_MODE": "disabled"}  # the driver's run logs the curve (`seal.rl.m_step_main`)
    with open(log_path, "w") as log_file:
        rc = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if rc != 0 or not out.is_dir():
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"m_step ({cfg.launcher}, {cfg.nproc} processes) failed with exit code {rc}; "
                           f"log {log_path}:\n{tail}")
    stats = json.loads((job_dir / "stats.json").read_text())
    shutil.rmtree(job_dir, ignore_errors=True)
    return stats


