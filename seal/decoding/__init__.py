"""Using what a small adapted model learned at decoding time: proxy-tuning and Co-LLM."""
