"""Visual LLM Playground: see how a real language model works, one concept per tab."""

__version__ = "0.1.0"
