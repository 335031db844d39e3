"""Self-edits for knowledge incorporation: the prompt that asks for one, the training documents
made from it, and sampling them in recorded chunks."""
