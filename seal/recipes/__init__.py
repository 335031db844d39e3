"""Recipes: one file per experiment, a typed config plus `run(cfg, run_dir)` that reads as a
sequence of steps. Recipes use the library; nothing in the library imports a recipe, and no
recipe imports another. Only `seal.cli` imports them."""
