"""Tiny, fast stand-ins for the real models: a byte-level BPE tokenizer trained on a few sentences,
a random Llama config (hidden 32, 2 layers, GQA 4 query / 2 KV heads), built in under a second, and a
hashed bag-of-words embedder standing in for MiniLM."""

from __future__ import annotations

import re
import zlib

import numpy as np
import torch

TRAINING_TEXT = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Attention is all you need. Tokens attend to earlier tokens.",
    "def add(a, b):\n    return a + b\n",
    "Sampling picks the next token from a probability distribution.",
] * 4

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_tokenizer(vocab_size: int = 300):
    """A byte-level BPE PreTrainedTokenizerFast with ChatML special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(TRAINING_TEXT, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", bos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=specials[1:])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_tiny_llama(vocab_size: int, seed: int = 0, num_hidden_layers: int = 2):
    """A random LlamaForCausalLM small enough to run hundreds of forwards per second."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=num_hidden_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).eval()
    # Random init at std 0.02 gives near-uniform logits; scale the head up so distributions have shape.
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20)
    return model


class HashEmbedder:
    """A stand-in for SentenceTransformer: hashed bag of words, deterministic, counts its work."""

    max_seq_length = 66

    def __init__(self, tokenizer, dim: int = 48) -> None:
        self.tokenizer = tokenizer
        self.dim = dim
        self.encoded = 0

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, batch_size=32, normalize_embeddings=False, convert_to_numpy=True, show_progress_bar=False):
        self.encoded += len(texts)
        vectors = np.full((len(texts), self.dim), 1e-3)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        if normalize_embeddings:
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32)
