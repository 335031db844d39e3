"""ARC few-shot reasoning: a task in, a test-time-training configuration as the self-edit, solving
the held-out grid as the reward."""
