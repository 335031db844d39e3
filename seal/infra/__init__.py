"""Plumbing every recipe shares: typed configs and their checks, the run folder, its lock and input
fingerprints, where inner loops run, wandb tracking and report helpers."""
