"""Loading the model and tokenizer a run works on (any hub id, local path or the embedded SmolLM2),
and the tiny random models the tests build."""
