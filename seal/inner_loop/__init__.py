"""The inner loop: a self-edit applied to the base model with LoRA SFT, K adapters at a time,
with its schedules and replay."""
