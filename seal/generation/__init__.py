"""Text generation behind one protocol: transformers (`hf`), a PEFT worker process, or vLLM."""
