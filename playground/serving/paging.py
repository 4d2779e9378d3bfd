"""Paged KV cache (vLLM's PagedAttention idea): a block table instead of one reservation per request.

Without paging, a server reserves each request's cache for the longest it may grow (`reserve_tokens`)
up front, contiguously; what the request does not use is wasted: reserve - length per request. With
paging, the cache is cut into blocks of `block_size` tokens taken from a shared pool as a sequence
grows, so only the last, partly filled block of each request wastes space: at most block_size - 1 tokens.
A block table maps each request's logical blocks to physical blocks, which need not be contiguous.

    >>> table = block_table([5, 3], block_size=4, reserve_tokens=8)
    >>> table.physical_blocks  # tokens arrive in lockstep, so the two requests' blocks interleave
    ((0, 2), (1,))
    >>> table.wasted_tokens_paged, table.wasted_tokens_reserved  # (8-5)+(4-3) ; (8-5)+(8-3)
    (4, 8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from playground.serving.errors import ServingInputError


@dataclass(frozen=True)
class BlockTable:
    lengths: tuple[int, ...]  # tokens cached per request
    block_size: int
    reserve_tokens: int  # the per-request reservation without paging (the longest a request may grow)
    physical_blocks: tuple[tuple[int, ...], ...]  # request -> physical block of each logical block, in order

    @property
    def blocks_used(self) -> int:
        return sum(len(blocks) for blocks in self.physical_blocks)

    def last_block_fill(self, request: int) -> int:
        """Tokens in the request's last block (1..block_size)."""
        return self.lengths[request] - (len(self.physical_blocks[request]) - 1) * self.block_size

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def wasted_tokens_paged(self) -> int:
        """Empty slots in the last block of each request (internal fragmentation)."""
        return self.blocks_used * self.block_size - self.tokens

    @property
    def wasted_tokens_reserved(self) -> int:
        """Reserved but unused slots when every request gets `reserve_tokens` up front."""
        return len(self.lengths) * self.reserve_tokens - self.tokens

    def as_json(self, bytes_per_token: int | None = None) -> dict[str, Any]:
        data = {"block_size": self.block_size, "reserve_tokens": self.reserve_tokens, "lengths": list(self.lengths),
                "block_table": [list(blocks) for blocks in self.physical_blocks], "blocks_used": self.blocks_used,
                "tokens": self.tokens, "wasted_tokens_paged": self.wasted_tokens_paged,
                "wasted_tokens_reserved": self.wasted_tokens_reserved}
        if bytes_per_token is not None:
            data |= {"bytes_per_token": bytes_per_token,
                     "wasted_bytes_paged": self.wasted_tokens_paged * bytes_per_token,
                     "wasted_bytes_reserved": self.wasted_tokens_reserved * bytes_per_token}
        return data


def block_table(lengths: Sequence[int], block_size: int, reserve_tokens: int) -> BlockTable:
    """The block table after every request has cached `lengths[i]` tokens, generated in lockstep (one token
    per request per step, as in a batch), each block taken from the free pool the moment a token needs it."""
    if not lengths or any(int(n) != n or n < 1 for n in lengths):
        raise ServingInputError("Every request must hold at least one token.")
    if block_size < 1:
        raise ServingInputError("The block size must be at least 1 token.")
    if reserve_tokens < max(lengths):
        raise ServingInputError(f"The reservation ({reserve_tokens} tokens) must cover the longest request "
                                f"({max(lengths)} tokens).")
    tables: list[list[int]] = [[] for _ in lengths]
    next_free = 0
    for position in range(max(lengths)):  # token `position` of every request still growing
        for request, length in enumerate(lengths):
            if position < length and position % block_size == 0:  # the first token of a new block
                tables[request].append(next_free)
                next_free += 1
    return BlockTable(tuple(int(n) for n in lengths), block_size, reserve_tokens, tuple(tuple(t) for t in tables))
