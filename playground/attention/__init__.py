"""Attention, computed: mask patterns, the loaded model's attention weights, the scores -> mask ->
softmax story of one head, and KV-cache memory. All plain Python / torch in and small frozen
dataclasses out.

Table of contents (one module per concept; each imports only the ones above it):

- errors.py    AttentionInputError, and MAX_ANALYSED_TOKENS (the one cap on analysed tokens)
- labels.py    tokens as labels (`token_labels`, the `word_pieces` fallback, `is_punctuation`)
- masks.py     mask patterns: `build_mask`, `allowed_pairs_formula`, `explore_mask`
- shape.py     the model's attention shape and GQA groups (`AttentionShape`)
- weights.py   real attention weights: ONE eager forward (`run_attention`, `RunCache`), sliced into
               views, query rows, head patterns and grids without another forward
- story.py     scores -> mask -> softmax for one head, rebuilt from Q and K (`score_story`)
- payload.py   the raw numbers behind the view, as JSON (`attention_json`)
- kv_cache.py  KV-cache memory for MHA / GQA as configured / MQA (`kv_cache_estimate`)

Every public name is re-exported here, so `from playground import attention` and
`from playground.attention import X` keep working.

    >>> int(build_mask("causal", 3).sum())    # 3·4/2 allowed pairs
    6
"""

from playground.attention.errors import MAX_ANALYSED_TOKENS, AttentionInputError
from playground.attention.kv_cache import KV_DTYPE_BYTES, KVCacheEstimate, KVCacheVariant, kv_cache_estimate
from playground.attention.labels import is_punctuation, token_labels, word_pieces
from playground.attention.masks import (
    MASK_PATTERNS,
    PAD_LABEL,
    MaskSequence,
    MaskView,
    allowed_pairs_formula,
    build_mask,
    explore_mask,
)
from playground.attention.payload import attention_json
from playground.attention.shape import AttentionShape
from playground.attention.story import ScoreStory, score_story
from playground.attention.weights import (
    GRID_MODES,
    THUMBNAIL_CELLS,
    AttentionGrid,
    AttentionRow,
    AttentionRun,
    AttentionView,
    HeadPattern,
    RunCache,
    attention_grid,
    attention_view,
    downsample_max,
    head_name,
    head_pattern,
    layer_allowed,
    parse_head,
    parse_layer,
    query_row,
    run_attention,
)

__all__ = [
    "MAX_ANALYSED_TOKENS", "AttentionInputError",
    "KV_DTYPE_BYTES", "KVCacheEstimate", "KVCacheVariant", "kv_cache_estimate",
    "is_punctuation", "token_labels", "word_pieces",
    "MASK_PATTERNS", "PAD_LABEL", "MaskSequence", "MaskView", "allowed_pairs_formula", "build_mask", "explore_mask",
    "attention_json",
    "AttentionShape",
    "ScoreStory", "score_story",
    "GRID_MODES", "THUMBNAIL_CELLS", "AttentionGrid", "AttentionRow", "AttentionRun", "AttentionView", "HeadPattern",
    "RunCache", "attention_grid", "attention_view", "downsample_max", "head_name", "head_pattern", "layer_allowed",
    "parse_head", "parse_layer", "query_row", "run_attention",
]
