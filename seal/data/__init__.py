"""Where contexts come from: passages with questions (SQuAD files, the hub, or the made-up
knowledge benchmark seal generates itself)."""
