"""BPE, step by step: train a byte-level BPE with the `tokenizers` trainer, replay its merges one at a
time, and segment a text as it would be after any number of merges.
"""

from __future__ import annotations

import functools
import heapq
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from playground.limits import LIMITS
from playground.tokenization.display import readable_bytes
from playground.tokenization.errors import TokenizationError
from playground.tokenization.text_bytes import BYTE_LEVEL_DECODER, utf8_bytes


@dataclass(frozen=True)
class BpeMerge:
    rank: int  # 0-based: the order the trainer learned it in
    left: str  # byte-level strings ('Ġ' is a space)
    right: str
    count: int  # how often the pair occurred in the training words when it was merged

    @property
    def merged(self) -> str:
        return self.left + self.right


@dataclass(frozen=True)
class BpeTraining:
    """A byte-level BPE trained on a corpus, and the text segmented step by step.

    tokens_per_step[n]: how many tokens the text takes after the first n merges (n = 0: its bytes).
    """

    merges: tuple[BpeMerge, ...]
    trainer_merges: tuple[tuple[str, str], ...]
    first_mismatch: int | None  # first rank where our replay differs from the trainer (None: same)
    corpus_chars: int
    corpus_truncated: bool
    text: str
    text_truncated: bool
    words: tuple[str, ...]  # the text's pre-tokenized words, byte-level strings
    tokens_per_step: tuple[int, ...]
    alphabet_size: int
    final_tokens: tuple[str, ...]  # the trained tokenizer's own encoding of the text

    @property
    def matches_trainer(self) -> bool:
        return self.first_mismatch is None and len(self.merges) == len(self.trainer_merges)

    def first_visible_step(self) -> int:
        """The first merge that changes the text's segmentation (1 when none does)."""
        return next((step for step in range(1, len(self.tokens_per_step))
                     if self.tokens_per_step[step] < self.tokens_per_step[step - 1]), 1)

    def vocab_size_at(self, step: int) -> int:
        """Vocabulary size after `step` merges (a merge producing an existing string adds nothing)."""
        return self.alphabet_size + len({merge.merged for merge in self.merges[:step]})

    def payload(self) -> dict[str, Any]:
        return {
            "merges": [{"rank": m.rank, "left": m.left, "right": m.right, "merged": m.merged, "count": m.count,
                        "left_text": readable_bytes(piece_to_bytes(m.left)),
                        "right_text": readable_bytes(piece_to_bytes(m.right))} for m in self.merges],
            "matches_trainer": self.matches_trainer,
            "first_mismatch": self.first_mismatch,
            "trainer_merge_count": len(self.trainer_merges),
            "corpus_chars": self.corpus_chars,
            "corpus_truncated": self.corpus_truncated,
            "text_chars": len(self.text),
            "text_truncated": self.text_truncated,
            "alphabet_size": self.alphabet_size,
            "tokens_per_step": list(self.tokens_per_step),
            "vocab_size_per_step": [self.vocab_size_at(step) for step in range(len(self.merges) + 1)],
        }


BPE_MAX_MERGES = LIMITS.bpe_merges
BPE_CORPUS_CHAR_LIMIT = LIMITS.bpe_corpus_chars
BPE_TEXT_CHAR_LIMIT = LIMITS.bpe_text_chars


def piece_to_bytes(piece: str) -> bytes:
    return bytes(BYTE_LEVEL_DECODER[char] for char in piece)


def _byte_level_words(text: str) -> list[str]:
    """The words the ByteLevel pre-tokenizer makes (GPT-2's regex, bytes mapped to printable chars)."""
    from tokenizers import pre_tokenizers

    return [word for word, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)]


@dataclass(frozen=True)
class _TrainedBpe:
    """What training on one corpus gives, whatever text is segmented with it afterwards."""

    tokenizer: Any  # tokenizers.Tokenizer with the learned merges
    trainer_merges: tuple[tuple[str, str], ...]
    replayed: tuple[BpeMerge, ...]
    first_mismatch: int | None
    alphabet_size: int


@functools.lru_cache(maxsize=8)
def _train(corpus: str, merges: int) -> _TrainedBpe:
    """Train on `corpus` and replay the training (~0.3 s on the example corpus): cached, so a new text to segment
    (every key typed in the tab) costs only the segmentation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + merges, initial_alphabet=alphabet,
                                  show_progress=False, special_tokens=[])
    tokenizer.train_from_iterator([corpus], trainer)
    trainer_merges = tuple(tuple(pair) for pair in json.loads(tokenizer.to_str())["model"]["merges"])

    corpus_words: dict[str, int] = {}
    for word in _byte_level_words(corpus):
        corpus_words[word] = corpus_words.get(word, 0) + 1
    replayed = replay_bpe_training(corpus_words, alphabet, len(alphabet) + merges)
    mismatch = next((rank for rank, (merge, pair) in enumerate(zip(replayed, trainer_merges))
                     if (merge.left, merge.right) != pair), None)
    return _TrainedBpe(tokenizer, trainer_merges, tuple(replayed), mismatch, len(alphabet))


def train_bpe(corpus: str, text: str, merges: int) -> BpeTraining:
    """Train a byte-level BPE with `merges` merges on `corpus` (tokenizers' BpeTrainer), replay the
    training in Python to get each merge's count, and segment `text` after every merge."""
    if not 1 <= merges <= BPE_MAX_MERGES:
        raise TokenizationError(f"Number of merges must be between 1 and {BPE_MAX_MERGES}, got {merges}.")
    if not corpus:
        raise TokenizationError("The training text is empty: type some text, or train on the example corpus.")
    corpus_truncated = len(corpus) > BPE_CORPUS_CHAR_LIMIT
    corpus = corpus[:BPE_CORPUS_CHAR_LIMIT]
    text_truncated = len(text) > BPE_TEXT_CHAR_LIMIT
    text = text[:BPE_TEXT_CHAR_LIMIT]
    utf8_bytes(corpus + text)

    trained = _train(corpus, merges)
    words = tuple(_byte_level_words(text))
    ranks = {pair: rank for rank, pair in enumerate(trained.trainer_merges)}
    return BpeTraining(
        merges=trained.replayed, trainer_merges=trained.trainer_merges, first_mismatch=trained.first_mismatch,
        corpus_chars=len(corpus), corpus_truncated=corpus_truncated, text=text, text_truncated=text_truncated,
        words=words, tokens_per_step=_tokens_per_step(words, ranks, len(trained.trainer_merges)),
        alphabet_size=trained.alphabet_size, final_tokens=tuple(trained.tokenizer.encode(text).tokens) if text else (),
    )


def replay_bpe_training(word_counts: dict[str, int], alphabet: Sequence[str], vocab_size: int) -> list[BpeMerge]:
    """Learn BPE merges the way tokenizers' BpeTrainer does, in Python, recording each merge's count.

    Same rules, so the same merges in the same order: symbols get ids in code-point order; the next
    merge is the pair with the highest count, ties going to the smallest (left id, right id); counts
    are kept per pair with a max-heap whose stale entries are refreshed when they reach the top; a
    merge whose string already exists reuses that id.
    """
    symbols: list[str] = sorted(set(alphabet) | {char for word in word_counts for char in word}, key=ord)
    symbol_id = {symbol: index for index, symbol in enumerate(symbols)}
    words = [[symbol_id[char] for char in word] for word in word_counts]
    counts = list(word_counts.values())

    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for index, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + counts[index]
            where.setdefault(pair, set()).add(index)
    # Heap entries: (-count, pair, tiebreak, word indices); Python's heapq is a min-heap.
    heap = [(-pair_counts[pair], pair, 0, positions) for pair, positions in where.items() if pair_counts[pair] > 0]
    heapq.heapify(heap)
    pushes = 1
    merges: list[BpeMerge] = []
    while len(symbol_id) < vocab_size and heap:
        negative, pair, _, positions = heapq.heappop(heap)
        if -negative != pair_counts[pair]:  # stale: re-queue with the current count
            heapq.heappush(heap, (-pair_counts[pair], pair, pushes, positions))
            pushes += 1
            continue
        if -negative < 1:
            break
        left, right = symbols[pair[0]], symbols[pair[1]]
        merged = left + right
        if merged not in symbol_id:
            symbol_id[merged] = len(symbols)
            symbols.append(merged)
        new_id = symbol_id[merged]
        merges.append(BpeMerge(len(merges), left, right, -negative))
        touched: dict[tuple[int, int], set[int]] = {}
        for index in positions:
            for changed, delta in _merge_in_word(words[index], pair, new_id):
                pair_counts[changed] = pair_counts.get(changed, 0) + delta * counts[index]
                if delta > 0:
                    touched.setdefault(changed, set()).add(index)
        for changed, indices in touched.items():
            if pair_counts[changed] > 0:
                heapq.heappush(heap, (-pair_counts[changed], changed, pushes, indices))
                pushes += 1
    return merges


def _merge_in_word(word: list[int], pair: tuple[int, int], new_id: int) -> list[tuple[tuple[int, int], int]]:
    """Merge every occurrence of `pair` in `word` left to right, in place; return the pair-count
    changes (pair, +1/-1) in the order the trainer reports them (the merged pair itself excluded)."""
    changes = []
    index = 0
    while index < len(word) - 1:
        if word[index] == pair[0] and word[index + 1] == pair[1]:
            if index > 0:
                changes.append(((word[index - 1], pair[0]), -1))
                changes.append(((word[index - 1], new_id), 1))
            word[index:index + 2] = [new_id]
            if index < len(word) - 1:
                changes.append(((pair[1], word[index + 1]), -1))
                changes.append(((new_id, word[index + 1]), 1))
        index += 1
    return changes


def segment_word(word: str, ranks: dict[tuple[str, str], int], max_rank: int) -> tuple[list[str], list[int]]:
    """BPE-encode one word using only merges of rank < max_rank: repeatedly merge the adjacent pair
    with the lowest rank. Returns the pieces and the ranks of the merges applied, in order."""
    pieces = list(word)
    applied = []
    while len(pieces) > 1:
        best_rank, best_index = max_rank, -1
        for index in range(len(pieces) - 1):
            rank = ranks.get((pieces[index], pieces[index + 1]), max_rank)
            if rank < best_rank:
                best_rank, best_index = rank, index
        if best_index < 0:
            break
        pieces[best_index:best_index + 2] = [pieces[best_index] + pieces[best_index + 1]]
        applied.append(best_rank)
    return pieces, applied


def _tokens_per_step(words: Sequence[str], ranks: dict[tuple[str, str], int], merges: int) -> tuple[int, ...]:
    """Tokens the text needs after each number of merges: its byte count minus the merges applied so far."""
    removed = np.zeros(merges + 1, dtype=np.int64)
    frequencies: dict[str, int] = {}
    for word in words:
        frequencies[word] = frequencies.get(word, 0) + 1
    for word, frequency in frequencies.items():
        for rank in segment_word(word, ranks, merges)[1]:
            removed[rank + 1] += frequency  # merge `rank` is in effect from step rank + 1 on
    initial = sum(len(word) for word in words)
    return tuple((initial - np.cumsum(removed)).tolist())


def segmentation_at(training: BpeTraining, step: int) -> list[tuple[str, bool]]:
    """The text's tokens after the first `step` merges, each flagged when merge `step` just made it."""
    if not 0 <= step <= len(training.trainer_merges):
        raise TokenizationError(f"Step must be between 0 and {len(training.trainer_merges)}, got {step}.")
    ranks = {pair: rank for rank, pair in enumerate(training.trainer_merges)}
    newest = step - 1
    result: list[tuple[str, bool]] = []
    for word in training.words:
        pieces, applied = segment_word(word, ranks, step)
        made_now = newest in applied
        target = "".join(training.trainer_merges[newest]) if made_now else None
        result.extend((piece, piece == target) for piece in pieces)
    return result


@functools.lru_cache(maxsize=1)
def example_corpus() -> str:
    """Python's own language reference (pydoc_data ships with Python): a real, offline English corpus."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))
