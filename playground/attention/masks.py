"""Mask patterns: `build_mask(pattern, n, ...)` -> bool [n, n] (True = the query may look at the key),
and `explore_mask(text, pattern, ...)`, which labels it with the user's tokens and counts allowed
pairs with a closed form (`allowed_pairs_formula`), so the count is checked, not just summed.

Worked example (causal mask, 3 tokens): 6 = 3·4/2 allowed pairs.

    >>> build_mask("causal", 3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from playground.limits import shown
from playground.attention.errors import MAX_ANALYSED_TOKENS, AttentionInputError
from playground.attention.labels import word_pieces

# key -> (label shown in the UI, one line on what it is for)
MASK_PATTERNS: dict[str, tuple[str, str]] = {
    "bidirectional": ("Bidirectional (encoder)", "every token sees every token, as in BERT"),
    "causal": ("Causal (decoder)", "each token sees itself and the tokens before it, as in GPT/Llama"),
    "sliding_window": ("Sliding window (width W)", "each token sees itself and the W-1 tokens before it (Mistral, Gemma local layers)"),
    "prefix_lm": ("Prefix-LM", "the first P tokens see each other both ways; the rest is causal (T5-style prefix LM)"),
    "chunked": ("Chunked / local", "causal inside chunks of C tokens; nothing across chunks (Llama 4 local layers)"),
    "document": ("Document mask (packed)", "several documents (one per line) packed into one sequence; causal inside each document only"),
    "padding_left": ("Padding, left (batch of 2)", "two prompts (lines 1 and 2) in one batch, the shorter one padded on the left"),
    "padding_right": ("Padding, right (batch of 2)", "two prompts (lines 1 and 2) in one batch, the shorter one padded on the right"),
}
PAD_LABEL = "[pad]"


def build_mask(pattern: str, length: int, *, window: int = 4, prefix_length: int = 4, chunk_size: int = 4,
               document_ids: Sequence[int] | None = None, real_tokens: Sequence[bool] | None = None) -> torch.Tensor:
    """The boolean attention mask [length, length]: entry [q, k] is True when query q may attend to key k.

    document_ids: for "document", which document each position belongs to.
    real_tokens: for "padding_*", False at pad positions (their rows and columns are masked).
    """
    query = torch.arange(length).unsqueeze(1)  # [n, 1]
    key = torch.arange(length).unsqueeze(0)  # [1, n]
    causal = key <= query  # [n, n]
    if pattern == "bidirectional":
        return torch.ones(length, length, dtype=torch.bool)
    if pattern == "causal":
        return causal
    if pattern == "sliding_window":
        return causal & (query - key < window)
    if pattern == "prefix_lm":
        return causal | (key < prefix_length)
    if pattern == "chunked":
        return causal & (query // chunk_size == key // chunk_size)
    if pattern == "document":
        if document_ids is None or len(document_ids) != length:
            raise AttentionInputError("The document mask needs one document id per token.")
        documents = torch.as_tensor(list(document_ids))
        return causal & (documents.unsqueeze(1) == documents.unsqueeze(0))
    if pattern in ("padding_left", "padding_right"):
        if real_tokens is None or len(real_tokens) != length:
            raise AttentionInputError("The padding mask needs a real/pad flag per position.")
        real = torch.as_tensor(list(real_tokens), dtype=torch.bool)
        return causal & real.unsqueeze(1) & real.unsqueeze(0)
    raise AttentionInputError(f"Unknown mask pattern {shown(pattern)}; choose one of: {', '.join(MASK_PATTERNS)}.")


def allowed_pairs_formula(pattern: str, lengths: Sequence[int], *, window: int = 4, prefix_length: int = 4,
                          chunk_size: int = 4) -> tuple[int, str]:
    """Closed-form count of allowed (query, key) pairs and the formula with the numbers filled in.

    lengths: [n] for one sequence; the document lengths for "document"; the real (unpadded) length
    for "padding_*". Computed without building the mask, so tests can check one against the other.
    """
    def triangle(m: int) -> int:
        return m * (m + 1) // 2

    n = lengths[0]
    if pattern == "bidirectional":
        return n * n, f"n² = {n}² = {n * n}"
    if pattern == "causal":
        return triangle(n), f"n(n+1)/2 = {n}·{n + 1}/2 = {triangle(n)}"
    if pattern == "sliding_window":
        w = min(window, n)
        count = n * w - w * (w - 1) // 2
        return count, f"n·W − W(W−1)/2 = {n}·{w} − {w}·{w - 1}/2 = {count}"
    if pattern == "prefix_lm":
        p = min(prefix_length, n)
        count = p * p + triangle(n) - triangle(p)
        return count, f"P² + n(n+1)/2 − P(P+1)/2 = {p}² + {triangle(n)} − {triangle(p)} = {count}"
    if pattern == "chunked":
        full, rest = divmod(n, chunk_size)
        count = full * triangle(chunk_size) + triangle(rest)
        return count, (f"⌊n/C⌋·C(C+1)/2 + r(r+1)/2 = {full}·{triangle(chunk_size)} + {triangle(rest)} = {count} "
                       f"(r = n mod C = {rest})")
    if pattern == "document":
        count = sum(triangle(m) for m in lengths)
        terms = " + ".join(str(triangle(m)) for m in lengths)
        return count, f"Σ lᵢ(lᵢ+1)/2 over {len(lengths)} documents = {terms} = {count}"
    if pattern in ("padding_left", "padding_right"):
        return triangle(n), f"L(L+1)/2 = {n}·{n + 1}/2 = {triangle(n)} (L = real tokens)"
    raise AttentionInputError(f"Unknown mask pattern {shown(pattern)}; choose one of: {', '.join(MASK_PATTERNS)}.")


@dataclass(frozen=True)
class MaskSequence:
    """One row of the batch: its token labels (pads included), mask and counts."""

    name: str
    tokens: tuple[str, ...]
    allowed: torch.Tensor  # [n, n] bool
    allowed_pairs: int  # counted in the mask
    formula_pairs: int  # from the closed form
    formula: str

    @property
    def total_pairs(self) -> int:
        return len(self.tokens) ** 2


@dataclass(frozen=True)
class MaskView:
    pattern: str
    label: str
    description: str
    sequences: tuple[MaskSequence, ...]  # 1, or 2 for the padding patterns
    compute_note: str  # what the mask does to the work of attention
    note: str  # truncation / fallback notes ("" when none)

    def as_json(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "label": self.label,
            "sequences": [{"name": s.name, "tokens": list(s.tokens), "allowed": s.allowed.int().tolist(),
                           "allowed_pairs": s.allowed_pairs, "total_pairs": s.total_pairs,
                           "formula": s.formula} for s in self.sequences],
            "compute_note": self.compute_note,
            "note": self.note,
        }


def _cap(tokens: list[str], max_tokens: int, notes: list[str], what: str) -> list[str]:
    if len(tokens) > max_tokens:
        notes.append(f"{what} has {len(tokens)} tokens; only the first {max_tokens} are shown.")
        return tokens[:max_tokens]
    return tokens


def _compute_note(pattern: str, sequences: tuple[MaskSequence, ...], window: int, chunk_size: int) -> str:
    n = len(sequences[0].tokens)  # every sequence of a batch has the same (padded) length
    allowed = sum(s.allowed_pairs for s in sequences)
    total = sum(s.total_pairs for s in sequences)
    share = allowed / max(total, 1)
    batch = f"{len(sequences)} × " if len(sequences) > 1 else ""
    head = f"{allowed} of {batch}{n}² = {total} query-key pairs are allowed ({100 * share:.1f}%)."
    if pattern == "bidirectional":
        return head + " Every score is used: the work of QKᵀ and of the weighted sum grows as n²."
    if pattern in ("sliding_window", "chunked"):
        width = window if pattern == "sliding_window" else chunk_size
        return (head + f" The work grows as n·{'W' if pattern == 'sliding_window' else 'C'} "
                f"(= {n}·{width}) instead of n²: a kernel that skips fully masked blocks does about "
                f"{100 * share:.0f}% of the dense work, and the KV cache needs at most the last {width} tokens.")
    if pattern.startswith("padding"):
        return (head + f" The batch is computed as one padded {n}×{n} tile per prompt, so pad rows and columns are "
                "work thrown away; left padding keeps every prompt's last token in the same column, which is why "
                "batched generation pads on the left.")
    return (head + " A dense kernel computes all n² scores and throws the masked ones away; a kernel that skips "
            f"fully masked blocks (as FlashAttention does for causal masks) does about {100 * share:.0f}% of the work.")


def explore_mask(text: str, pattern: str, *, tokenize: Callable[[str], list[str]] = word_pieces, window: int = 4,
                 prefix_length: int = 4, chunk_size: int = 4, max_tokens: int = MAX_ANALYSED_TOKENS) -> MaskView:
    """The mask of `pattern` labelled with the tokens of `text` (lines = documents / the two prompts)."""
    if pattern not in MASK_PATTERNS:
        raise AttentionInputError(f"Unknown mask pattern {shown(pattern)}; choose one of: {', '.join(MASK_PATTERNS)}.")
    for name, value in (("window W", window), ("prefix length P", prefix_length), ("chunk size C", chunk_size)):
        if int(value) < 1:
            raise AttentionInputError(f"The {name} must be at least 1, got {value}.")
    window, prefix_length, chunk_size = int(window), int(prefix_length), int(chunk_size)
    label, description = MASK_PATTERNS[pattern]
    notes: list[str] = []
    lines = [line for line in text.splitlines() if line.strip()]
    if pattern == "document":
        sequences = (_document_sequence(lines, tokenize, max_tokens, notes),)
    elif pattern.startswith("padding"):
        sequences = _padded_sequences(lines, pattern, tokenize, max_tokens, notes)
    else:
        tokens = _cap(tokenize(text), max_tokens, notes, "The text")
        allowed = build_mask(pattern, len(tokens), window=window, prefix_length=prefix_length, chunk_size=chunk_size)
        count, formula = allowed_pairs_formula(pattern, [len(tokens)], window=window, prefix_length=prefix_length,
                                               chunk_size=chunk_size)
        sequences = (MaskSequence("sequence", tuple(tokens), allowed, int(allowed.sum()), count, formula),)
    return MaskView(pattern, label, description, sequences,
                    _compute_note(pattern, sequences, window, chunk_size), " ".join(notes))


def _document_sequence(lines: list[str], tokenize: Callable[[str], list[str]], max_tokens: int,
                       notes: list[str]) -> MaskSequence:
    documents = [tokenize(line) for line in lines]
    if len(documents) < 2:
        notes.append("Write two or more lines to pack several documents; with one line this is a causal mask.")
    tokens: list[str] = []
    document_ids: list[int] = []
    for index, document in enumerate(documents):
        room = max_tokens - len(tokens)
        if room <= 0:
            notes.append(f"Only the first {index} documents fit in {max_tokens} tokens.")
            break
        tokens += document[:room]
        document_ids += [index] * len(document[:room])
    lengths = [document_ids.count(index) for index in sorted(set(document_ids))] or [0]
    allowed = build_mask("document", len(tokens), document_ids=document_ids)
    count, formula = allowed_pairs_formula("document", lengths)
    return MaskSequence("packed sequence", tuple(tokens), allowed, int(allowed.sum()), count, formula)


def _padded_sequences(lines: list[str], pattern: str, tokenize: Callable[[str], list[str]], max_tokens: int,
                      notes: list[str]) -> tuple[MaskSequence, ...]:
    if len(lines) < 2:
        raise AttentionInputError("Padding needs a batch of two prompts: write them on two lines.")
    prompts = [_cap(tokenize(line), max_tokens, notes, f"Prompt {name}") for name, line in zip("AB", lines[:2])]
    width = max(len(tokens) for tokens in prompts)
    if len(prompts[0]) == len(prompts[1]):
        notes.append("Both prompts have the same number of tokens, so nothing is padded: make one longer.")
    sequences = []
    for name, tokens in zip("AB", prompts):
        pads = width - len(tokens)
        if pattern == "padding_left":
            labels, real = [PAD_LABEL] * pads + tokens, [False] * pads + [True] * len(tokens)
        else:
            labels, real = tokens + [PAD_LABEL] * pads, [True] * len(tokens) + [False] * pads
        allowed = build_mask(pattern, width, real_tokens=real)
        count, formula = allowed_pairs_formula(pattern, [len(tokens)])
        sequences.append(MaskSequence(f"prompt {name} ({pads} pad{'s' if pads != 1 else ''})", tuple(labels), allowed,
                                      int(allowed.sum()), count, formula))
    return tuple(sequences)
