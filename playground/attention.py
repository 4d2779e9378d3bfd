"""Attention, computed: mask patterns, the loaded model's attention weights, and KV-cache memory.

Three independent pieces, all plain Python / torch in and small frozen dataclasses out:

- masks: `build_mask(pattern, n, ...)` -> bool [n, n] (True = the query may look at the key), and
  `explore_mask(text, pattern, ...)` which labels it with the user's tokens and counts allowed pairs
  with a closed form (`allowed_pairs_formula`), so the count is checked, not just summed.
- real weights: `run_attention(model, tokenizer, text)` does ONE eager forward with
  `output_attentions=True` and keeps every layer's weights [heads, n, n] plus the input of each
  attention block; `attention_view`, `attention_grid`, `head_patterns`, `query_row` and `score_story`
  slice that run without another forward.
- memory: `kv_cache_estimate(shape, context, dtype)` for MHA / GQA as configured / MQA.

Worked example (causal mask, 3 tokens): build_mask("causal", 3) ->
    [[1, 0, 0],
     [1, 1, 0],
     [1, 1, 1]]   6 = 3·4/2 allowed pairs.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from playground.generation import encode_prompt
from playground.quantization import architecture_summary, kv_cache_bytes
from playground.limits import LIMITS

MAX_ANALYSED_TOKENS = LIMITS.attention_tokens
THUMBNAIL_CELLS = 48  # grid thumbnails are downsampled to at most this many cells per side

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
KV_DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


class AttentionInputError(ValueError):
    """Bad input from the user (unknown pattern, layer out of range, ...); the message names the fix."""


# ---------------------------------------------------------------------------------------------
# Tokens as labels
# ---------------------------------------------------------------------------------------------


def visible_token(text: str) -> str:
    """Make whitespace visible in a token label: ' the' -> '␣the', '\\n' -> '↵'."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own (so byte-level 'Ġ' markers become real spaces), whitespace made visible."""
    return [visible_token(tokenizer.decode([int(token_id)])) for token_id in ids]


def word_pieces(text: str) -> list[str]:
    """Fallback 'tokenizer' when no model is loaded: words with their leading space, and punctuation."""
    return [visible_token(piece) for piece in re.findall(r"\s*\w+|\s*[^\w\s]|\s+", text)]


def is_punctuation(label: str) -> bool:
    stripped = label.replace("␣", "").replace("↵", "").replace("⇥", "").strip()
    return bool(stripped) and all(unicodedata.category(char).startswith("P") for char in stripped)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


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
    raise AttentionInputError(f"Unknown mask pattern {pattern!r}; choose one of: {', '.join(MASK_PATTERNS)}.")


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
    raise AttentionInputError(f"Unknown mask pattern {pattern!r}; choose one of: {', '.join(MASK_PATTERNS)}.")


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
        raise AttentionInputError(f"Unknown mask pattern {pattern!r}; choose one of: {', '.join(MASK_PATTERNS)}.")
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


# ---------------------------------------------------------------------------------------------
# The model's attention shape and GQA groups
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionShape:
    num_layers: int
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads (== num_heads: MHA, 1: MQA, in between: GQA)
    head_dim: int

    @classmethod
    def from_config(cls, config: Any) -> AttentionShape:
        summary = architecture_summary(config)  # one reading of the config for the whole app
        return cls(summary.layers, summary.attention_heads, summary.kv_heads, summary.head_dim)

    @property
    def group_size(self) -> int:
        """Query heads per KV head."""
        return self.num_heads // self.num_kv_heads

    def kv_head_of(self, head: int) -> int:
        """The KV head that query head `head` reads (transformers' repeat_kv order)."""
        return head // self.group_size

    def kv_groups(self) -> tuple[tuple[int, ...], ...]:
        """Query heads grouped by the KV head they share: 9 heads / 3 KV heads -> ((0,1,2), (3,4,5), (6,7,8))."""
        return tuple(tuple(range(g * self.group_size, (g + 1) * self.group_size)) for g in range(self.num_kv_heads))

    def as_json(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers, "num_heads": self.num_heads, "num_kv_heads": self.num_kv_heads,
                "head_dim": self.head_dim, "kv_head_of_query_head": [self.kv_head_of(h) for h in range(self.num_heads)]}


# ---------------------------------------------------------------------------------------------
# Real attention weights: one forward, many views
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionRun:
    """Everything one eager forward gave us. Views slice it; nothing here is recomputed."""

    model: Any  # the model that ran (its attention modules recompute Q and K for the score story)
    shape: AttentionShape
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    total_tokens: int  # before the cap
    weights: tuple[torch.Tensor, ...]  # per layer: [heads, n, n] float32, rows = queries
    attention_inputs: tuple[torch.Tensor, ...]  # per layer: the attention block's input [1, n, hidden]
    rotary: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: (cos, sin) [1, n, head_dim]
    additive_masks: tuple[torch.Tensor | None, ...]  # per layer: [n, n] 0 / very negative, or None (= causal)

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def note(self) -> str:
        if self.total_tokens > self.length:
            return (f"Your prompt has {self.total_tokens} tokens; the first {self.length} are analysed "
                    f"(attention has n² weights per head, so longer inputs are capped at {self.length}).")
        return ""


def _decoder_layers(model: Any) -> Any:
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise AttentionInputError(f"{type(model).__name__} has no model.layers: this view supports "
                                  "decoder-only models such as Llama, Qwen2 and Gemma.")
    return layers


@torch.no_grad()
def run_attention(model: Any, tokenizer: Any, text: str, max_tokens: int = MAX_ANALYSED_TOKENS,
                  chat: bool = False) -> AttentionRun:
    """One forward with output_attentions=True on the first `max_tokens` tokens of `text` (wrapped in the
    chat template when `chat`). The model must use eager attention (`LoadedModel.eager_attention()`):
    SDPA never builds the weight matrix."""
    if not text.strip():
        raise AttentionInputError("The prompt is empty: type some text to see its attention.")
    if model.config._attn_implementation != "eager":
        raise RuntimeError("run_attention needs eager attention: call it inside LoadedModel.eager_attention().")
    all_ids = encode_prompt(tokenizer, text, chat=chat)[0].tolist()
    ids, total = all_ids[:max_tokens], len(all_ids)
    layers = _decoder_layers(model)
    captured: list[dict[str, Any]] = [{} for _ in layers]

    def capture(index: int) -> Callable[..., None]:
        # A forward pre-hook sees the attention block's inputs: the normed hidden states, RoPE (cos, sin)
        # and the additive mask this layer uses (sliding-window layers get their own).
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            captured[index].update(hidden=kwargs.get("hidden_states", args[0] if args else None),
                                   rotary=kwargs["position_embeddings"], mask=kwargs.get("attention_mask"))
        return hook

    handles = [layer.self_attn.register_forward_pre_hook(capture(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        device = next(model.parameters()).device
        output = model(torch.tensor([ids], device=device), output_attentions=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    if not output.attentions or output.attentions[0] is None:
        raise RuntimeError("The model returned no attention weights (is attention eager?).")
    n = len(ids)

    def square_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
        return None if mask is None else mask.reshape(-1, n, mask.shape[-1])[0, :, -n:]  # [n, n]

    return AttentionRun(
        model=model,
        shape=AttentionShape.from_config(model.config),
        token_ids=tuple(ids),
        tokens=tuple(token_labels(tokenizer, ids)),
        total_tokens=total,
        weights=tuple(layer_weights[0].float().cpu() for layer_weights in output.attentions),
        attention_inputs=tuple(c["hidden"] for c in captured),
        rotary=tuple(c["rotary"] for c in captured),
        additive_masks=tuple(square_mask(c["mask"]) for c in captured),
    )


class RunCache:
    """The last few runs by (model, text, chat): moving the layer or head slider, or picking another
    query token, slices a cached run instead of running the model again. Thread-safe."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._runs: OrderedDict[tuple[int, str, bool], AttentionRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: Any, text: str, chat: bool) -> AttentionRun | None:
        with self._lock:
            run = self._runs.get((id(model), text, chat))
            if run is None or run.model is not model:  # an id can be reused by a later model
                return None
            self._runs.move_to_end((id(model), text, chat))
            return run

    def put(self, text: str, chat: bool, run: AttentionRun) -> None:
        with self._lock:
            self._runs[(id(run.model), text, chat)] = run
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)


def parse_layer(layer: int | float | str, shape: AttentionShape) -> int:
    try:
        index = int(float(layer))
    except (TypeError, ValueError):
        raise AttentionInputError(f"Layer must be a number 0..{shape.num_layers - 1}, got {layer!r}.") from None
    if not 0 <= index < shape.num_layers:
        raise AttentionInputError(f"Layer {index} is out of range: this model has {shape.num_layers} layers "
                                  f"(0..{shape.num_layers - 1}).")
    return index


def parse_head(head: int | float | str | None, shape: AttentionShape) -> int | None:
    """'mean' (or None) -> None (mean over heads); '3' / 3 -> 3, checked against the head count."""
    if head is None or str(head).strip().lower() in ("mean", "mean over heads", ""):
        return None
    try:
        index = int(float(str(head).lower().replace("head", "").strip()))
    except ValueError:
        raise AttentionInputError(f"Head must be 'mean' or a number 0..{shape.num_heads - 1}, got {head!r}.") from None
    if not 0 <= index < shape.num_heads:
        raise AttentionInputError(f"Head {index} is out of range: this model has {shape.num_heads} query heads "
                                  f"(0..{shape.num_heads - 1}).")
    return index


def head_name(head: int | None) -> str:
    return "mean over heads" if head is None else f"head {head}"


def layer_allowed(run: AttentionRun, layer: int) -> torch.Tensor:
    """The boolean mask [n, n] that `layer` used: from its additive mask (0 = allowed), causal if it had none."""
    mask = run.additive_masks[layer]
    if mask is None:
        return torch.ones(run.length, run.length, dtype=torch.bool).tril()
    return (mask if mask.dtype == torch.bool else mask == 0).cpu()


@dataclass(frozen=True)
class AttentionView:
    """The weights of one layer for one head (or the mean over heads) and their checks."""

    tokens: tuple[str, ...]
    layer: int
    head: int | None  # None: mean over heads
    kv_head: int | None
    weights: torch.Tensor  # [n, n] float32, rows = queries, columns = keys
    allowed: torch.Tensor  # [n, n] bool: the layer's mask
    max_row_sum_error: float  # max |Σ_k w[q, k] − 1|
    max_above_diagonal: float  # largest weight on a future key (0 for a causal model)


def attention_view(run: AttentionRun, layer: int, head: int | None) -> AttentionView:
    layer_weights = run.weights[layer]  # [heads, n, n]
    weights = layer_weights.mean(dim=0) if head is None else layer_weights[head]
    future = torch.triu(torch.ones_like(weights, dtype=torch.bool), diagonal=1)
    return AttentionView(
        tokens=run.tokens, layer=layer, head=head, kv_head=None if head is None else run.shape.kv_head_of(head),
        weights=weights, allowed=layer_allowed(run, layer),
        max_row_sum_error=float((weights.double().sum(dim=-1) - 1).abs().max()),
        max_above_diagonal=float(weights[future].max()) if future.any() else 0.0,
    )


@dataclass(frozen=True)
class AttentionRow:
    """What one query token attends to: keys 0..position (later keys are masked for a causal model)."""

    position: int
    token: str
    keys: tuple[str, ...]
    weights: tuple[float, ...]


def query_row(view: AttentionView, position: int | float) -> AttentionRow:
    n = len(view.tokens)
    index = int(position)
    if not 0 <= index < n:
        raise AttentionInputError(f"Query position {index} is out of range: the prompt has {n} tokens (0..{n - 1}).")
    return AttentionRow(index, view.tokens[index], view.tokens[: index + 1],
                        tuple(float(w) for w in view.weights[index, : index + 1]))


@dataclass(frozen=True)
class HeadPattern:
    """Summary numbers that reveal common head types. Means over queries 1..n-1 (query 0 sees only itself)."""

    layer: int
    head: int | None
    kv_head: int | None
    first_token: float  # weight on token 0: "attention sink"
    previous_token: float  # weight on the key just before the query: "previous-token head"
    same_token: float  # weight on the query's own position (the diagonal)
    punctuation: float  # total weight on punctuation keys after token 0 (token 0 is the sink's, even if it is "#")
    entropy_bits: float  # how spread out a row is (0 = one key only)

    @property
    def dominant(self) -> tuple[str, float]:
        """The pattern that takes at least half the weight, e.g. ("sink", 0.83); else ("spread", entropy)."""
        shares = {"sink": self.first_token, "previous token": self.previous_token, "self": self.same_token,
                  "punctuation": self.punctuation}
        name, value = max(shares.items(), key=lambda item: item[1])
        return (name, value) if value >= 0.5 else ("spread", self.entropy_bits)

    def as_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "head": "mean" if self.head is None else self.head, "kv_head": self.kv_head,
                "first_token": round(self.first_token, 6), "previous_token": round(self.previous_token, 6),
                "same_token": round(self.same_token, 6), "punctuation": round(self.punctuation, 6),
                "entropy_bits": round(self.entropy_bits, 6), "dominant": self.dominant[0]}


def head_pattern(view: AttentionView) -> HeadPattern:
    weights = view.weights.double()  # [n, n]
    punctuation_keys = torch.tensor([is_punctuation(token) for token in view.tokens], dtype=torch.bool)
    punctuation_keys[0] = False  # weight on token 0 is counted as a sink
    if weights.shape[0] < 2:  # a single token can only look at itself
        return HeadPattern(view.layer, view.head, view.kv_head, 1.0, 0.0, 1.0, 0.0, 0.0)
    rows = weights[1:]  # [n-1, n]: query 0 has no choice, so it says nothing about the head
    entropy = -(rows * torch.log2(rows.clamp_min(1e-30))).sum(dim=-1)  # [n-1], 0·log 0 = 0
    return HeadPattern(
        layer=view.layer, head=view.head, kv_head=view.kv_head,
        first_token=float(rows[:, 0].mean()),
        previous_token=float(torch.diagonal(weights, offset=-1).mean()),  # w[q, q-1] for q = 1..n-1
        same_token=float(torch.diagonal(weights)[1:].mean()),
        punctuation=float(rows[:, punctuation_keys].sum(dim=-1).mean()),
        entropy_bits=float(entropy.mean()),
    )


@dataclass(frozen=True)
class AttentionGrid:
    """Small multiples: every head of one layer, or one head (or the mean) across every layer."""

    mode: str  # "heads" | "layers"
    views: tuple[AttentionView, ...]
    thumbnails: tuple[torch.Tensor, ...]  # [m, m] each, block-max of the weights (m <= THUMBNAIL_CELLS)
    block: int  # tokens per thumbnail cell along each side
    patterns: tuple[HeadPattern, ...]
    kv_groups: tuple[tuple[int, ...], ...]


def downsample_max(weights: torch.Tensor, cells: int = THUMBNAIL_CELLS) -> tuple[torch.Tensor, int]:
    """Block max-pool [n, n] to at most [cells, cells]: a sharp diagonal or sink column stays visible."""
    n = weights.shape[-1]
    block = max(1, math.ceil(n / cells))
    if block == 1:
        return weights, 1
    pooled = torch.nn.functional.max_pool2d(weights[None, None], kernel_size=block, stride=block, ceil_mode=True)
    return pooled[0, 0], block


GRID_MODES = {"heads": "all heads of this layer", "layers": "this head across all layers"}


def attention_grid(run: AttentionRun, layer: int, head: int | None, mode: str) -> AttentionGrid:
    if mode == "heads":
        views = tuple(attention_view(run, layer, h) for h in range(run.shape.num_heads))
    elif mode == "layers":
        views = tuple(attention_view(run, index, head) for index in range(run.shape.num_layers))
    else:
        raise AttentionInputError(f"Grid mode must be one of {', '.join(GRID_MODES)}, got {mode!r}.")
    pooled = [downsample_max(view.weights) for view in views]
    return AttentionGrid(mode, views, tuple(p[0] for p in pooled), pooled[0][1],
                         tuple(head_pattern(view) for view in views), run.shape.kv_groups())


@dataclass(frozen=True)
class ScoreStory:
    """One head, step by step: raw scores QKᵀ·scale, the mask, the softmax — rebuilt from Q and K."""

    layer: int
    head: int
    kv_head: int
    scale: float  # 1/sqrt(head_dim) for Llama-style models
    tokens: tuple[str, ...]
    scores: torch.Tensor  # [n, n] raw scores, future keys included
    allowed: torch.Tensor  # [n, n] bool, the mask this layer used
    probabilities: torch.Tensor  # [n, n] softmax over allowed keys
    max_abs_diff_vs_model: float  # |our softmax − the weights the model returned|, max over the matrix


@torch.no_grad()
def score_story(run: AttentionRun, layer: int, head: int) -> ScoreStory:
    """Recompute Q and K of `layer` from its captured input with the model's own projections and RoPE,
    then scores -> mask -> softmax, and compare with the weights the model itself returned."""
    attention = _decoder_layers(run.model)[layer].self_attn
    hidden = run.attention_inputs[layer]  # [1, n, hidden]
    n, head_dim = run.length, run.shape.head_dim
    query = attention.q_proj(hidden).view(1, n, -1, head_dim).transpose(1, 2)  # [1, heads, n, d]
    key = attention.k_proj(hidden).view(1, n, -1, head_dim).transpose(1, 2)  # [1, kv_heads, n, d]
    if hasattr(attention, "q_norm"):  # Qwen3 / Gemma 3 normalise Q and K per head before RoPE
        query, key = attention.q_norm(query), attention.k_norm(key)
    rope = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb")
    cos, sin = run.rotary[layer]
    query, key = rope(query, key, cos, sin)
    kv_head = run.shape.kv_head_of(head)
    scale = float(getattr(attention, "scaling", head_dim ** -0.5))
    scores = (query[0, head] @ key[0, kv_head].T).float() * scale  # [n, n]
    allowed = layer_allowed(run, layer)
    scores = scores.cpu()
    probabilities = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    difference = (probabilities - run.weights[layer][head].cpu()).abs().max()
    return ScoreStory(layer, head, kv_head, scale, run.tokens, scores, allowed, probabilities, float(difference))


def _matrix(values: torch.Tensor, decimals: int = 8) -> list[list[float]]:
    return torch.round(values.double(), decimals=decimals).tolist()


def attention_json(run: AttentionRun, view: AttentionView, grid: AttentionGrid, story: ScoreStory) -> dict[str, Any]:
    """The raw numbers behind the Attention view (documented in README): weights rounded to 8 decimals."""
    return {
        "tokens": list(run.tokens),
        "token_ids": list(run.token_ids),
        "total_tokens": run.total_tokens,
        "analysed_tokens": run.length,
        "note": run.note,
        "shape": run.shape.as_json(),
        "layer": view.layer,
        "head": "mean" if view.head is None else view.head,
        "weights": _matrix(view.weights),
        "checks": {"max_row_sum_error": view.max_row_sum_error, "max_weight_above_diagonal": view.max_above_diagonal,
                   "story_max_abs_diff_vs_model": story.max_abs_diff_vs_model},
        "grid": {"mode": grid.mode, "thumbnail_block": grid.block,
                 "patterns": [pattern.as_json() for pattern in grid.patterns]},
        "story": {"layer": story.layer, "head": story.head, "kv_head": story.kv_head, "scale": story.scale,
                  "raw_scores": _matrix(story.scores, 5), "masked_pairs": int((~story.allowed).sum())},
    }


# ---------------------------------------------------------------------------------------------
# KV-cache memory
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KVCacheVariant:
    name: str  # "MHA", "GQA", "MQA"
    kv_heads: int
    is_this_model: bool


@dataclass(frozen=True)
class KVCacheEstimate:
    """K and V cache size for one context length, for MHA, the model's own layout, and MQA. MB = 10⁶ bytes."""

    shape: AttentionShape
    context_length: int
    batch_size: int
    dtype: str
    bytes_per_value: int
    variants: tuple[KVCacheVariant, ...]
    curve_contexts: tuple[int, ...]  # context lengths for the plot, 1..max, the chosen one included

    def cache_bytes(self, kv_heads: int, context_length: int | None = None) -> int:
        return int(kv_cache_bytes(self.shape.num_layers, kv_heads, self.shape.head_dim,
                                  self.context_length if context_length is None else context_length,
                                  batch=self.batch_size, bytes_per_value=self.bytes_per_value))

    def megabytes(self, kv_heads: int, context_length: int | None = None) -> float:
        return self.cache_bytes(kv_heads, context_length) / 1e6

    def as_json(self) -> dict[str, Any]:
        return {"context_length": self.context_length, "batch_size": self.batch_size, "dtype": self.dtype,
                "bytes_per_value": self.bytes_per_value, **self.shape.as_json(),
                "bytes_per_token": self.cache_bytes(self.shape.num_kv_heads, 1) // self.batch_size,
                "variants": [{"name": v.name, "kv_heads": v.kv_heads, "this_model": v.is_this_model,
                              "bytes": self.cache_bytes(v.kv_heads), "megabytes": round(self.megabytes(v.kv_heads), 3)}
                             for v in self.variants]}


def kv_cache_estimate(shape: AttentionShape, context_length: int, dtype: str, batch_size: int = 1,
                      max_context: int | None = None) -> KVCacheEstimate:
    """Cache size at `context_length` for MHA (KV heads = query heads), GQA as this model has it, and MQA
    (1 KV head). A model that is itself MHA or MQA is marked as such instead of GQA."""
    if dtype not in KV_DTYPE_BYTES:
        raise AttentionInputError(f"Cache dtype must be one of {', '.join(KV_DTYPE_BYTES)}, got {dtype!r}.")
    context_length, batch_size = int(context_length), int(batch_size)
    if context_length < 1 or batch_size < 1:
        raise AttentionInputError("Context length and batch size must be at least 1.")
    variants = [KVCacheVariant("MHA", shape.num_heads, shape.num_kv_heads == shape.num_heads)]
    if 1 < shape.num_kv_heads < shape.num_heads:
        variants.append(KVCacheVariant("GQA", shape.num_kv_heads, True))
    variants.append(KVCacheVariant("MQA", 1, shape.num_kv_heads == 1))
    top = max(max_context or 0, context_length)
    curve = tuple(sorted({max(1, round(top * step / 32)) for step in range(33)} | {context_length}))
    return KVCacheEstimate(shape, context_length, batch_size, dtype, KV_DTYPE_BYTES[dtype], tuple(variants), curve)
