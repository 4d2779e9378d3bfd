"""The output head for CPU decoding: an int8 pass that finds the candidates, their logits recomputed in fp32.

The head turns the last hidden state into one logit per vocabulary token: SmolLM2-135M's is 49,152 x 576,
113 MB in fp32, read in full for every generated token -- with int4 decoder matrices it was ~35% of a step.
Int8 rows read a quarter of those bytes: each row (one token's output vector) is stored as int8 codes and one
scale, w ≈ q·scale with q ∈ -127..127 and scale = max|row| / 127. Rows keep their own scale, so a rare
token's small vector is not crushed by a frequent token's large one. Alone, int8 rows (and the kernel's bf16
output) moved the embedded model's next token away from fp32's too often (top-1 agreement 96.6%, under the 97%
the project asks for), so `DecodeHead` recomputes the top RESCORED candidates of every row exactly from the
fp32 weights: the top of the distribution, where greedy's argmax and most of a sampled token's probability lie,
is the fp32 head's (on SmolLM2's evaluation text: its top token at all 233 positions and its top 52 logits
everywhere), and only the tail keeps int8's error, which benchmarks.engine measures as a KL in the same run as
the speed.

Worked example (a row of 4): w = [0.5, -1.27, 0.02, 1.0] -> scale 1.27/127 = 0.01, q = [50, -127, 2, 100],
dequantized q·0.01 = [0.5, -1.27, 0.02, 1.0].
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch


def int8_head_available() -> bool:
    """Whether this torch build has the weight-only int8 matmul."""
    return hasattr(torch, "_weight_int8pack_mm")


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (codes [out, in] int8 in -127..127, scale [out] float32)."""
    weight = weight.detach().float()
    scale = (weight.abs().amax(dim=-1) / 127).clamp(min=1e-12)  # an all-zero row gets codes 0
    codes = (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    return codes, scale


class Int8RowLinear(torch.nn.Module):
    """y = x Wᵀ with W held as int8 codes and a scale per row; x is rounded to bf16 for the kernel (as the
    int4 decoder matrices do), y returned in x's dtype."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8RowLinear is for bias-free output heads")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        codes, scale = quantize_rows(linear.weight)
        self.register_buffer("codes", codes)  # [out, in] int8
        self.register_buffer("scale", scale.to(torch.bfloat16))  # [out]; the kernel wants the input's dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # [tokens, in]
        y = torch._weight_int8pack_mm(rows, self.codes, self.scale)  # [tokens, out]
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, per-row int8"


RESCORED = 64  # candidates per row whose logits are recomputed in fp32: 64 x 576 multiply-adds, ~0.1 ms
# Up to this many rows at once (a decode step, a speculative check) the int8 pass plus the rescoring is faster
# than the fp32 product (measured here, [rows x 576] x [576 x 49152]: 1 row 0.9 vs 4.3 ms, 8 rows 5.0 vs
# 12.9 ms, 256 rows 169 vs 109 ms); more rows take the fp32 product.
FEW_ROWS = 8

# Set by `decoding` for the forwards of a decoding loop, in this thread (or task) only: every other forward
# (an analysis that compares two distributions, the lens, calibration) gets the exact fp32 head, so a difference
# it shows is never the head's rounding.
_DECODING = contextvars.ContextVar("decoding", default=False)


@contextlib.contextmanager
def decoding() -> Iterator[None]:
    """Forwards inside this block are decoding steps: a DecodeHead takes its int8 pass for them."""
    token = _DECODING.set(True)
    try:
        yield
    finally:
        _DECODING.reset(token)


class DecodeHead(torch.nn.Module):
    """The output head, y = x Wᵀ. In a decoding step (`decoding`) of at most FEW_ROWS rows: an int8 pass
    (Int8RowLinear), then each row's top RESCORED logits recomputed exactly in fp32, so the logits that decide a
    token are the fp32 head's and only the tail beyond them is int8's. Otherwise: the exact fp32 product. W stays
    the fp32 weight it was given (tied to the input embeddings in small models: shared, not copied).

    >>> _ = torch.manual_seed(0)
    >>> linear = torch.nn.Linear(32, 100, bias=False)
    >>> head, x = DecodeHead(linear, candidates=8), torch.randn(1, 32)
    >>> exact = linear(x)
    >>> with decoding():
    ...     decoded = head(x)
    >>> top = exact.topk(4).indices  # the int8 pass's 8 candidates hold the exact top 4
    >>> torch.equal(decoded.argmax(-1), exact.argmax(-1)), torch.allclose(decoded[0, top], exact[0, top])
    (True, True)
    >>> torch.equal(head(x), exact)  # outside a decoding step
    True
    """

    def __init__(self, linear: torch.nn.Linear, candidates: int = RESCORED) -> None:
        super().__init__()
        self.weight = linear.weight  # [vocab, hidden] fp32, the same Parameter
        self.int8 = Int8RowLinear(linear)
        self.candidates = min(candidates, linear.out_features)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # [rows, hidden]
        if rows.shape[0] > FEW_ROWS or not _DECODING.get():
            return torch.nn.functional.linear(x, self.weight)
        logits = self.int8(rows).float()  # [rows, vocab], int8 rows with bf16 activations
        top = logits.topk(self.candidates, dim=-1).indices  # [rows, candidates]
        exact = torch.einsum("rh,rch->rc", rows.float(), self.weight[top])  # [rows, candidates], fp32
        logits.scatter_(1, top, exact)
        return logits.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 rows, top "
                f"{self.candidates} recomputed in fp32 in decoding steps of up to {FEW_ROWS} rows, else fp32")


def quantize_output_head(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the model's output head (`get_output_embeddings()`, a bias-free nn.Linear) for DecodeHead, in place;
    a head this torch build cannot run in int8 stays as it is."""
    head = model.get_output_embeddings()
    if int8_head_available() and isinstance(head, torch.nn.Linear) and head.bias is None:
        model.set_output_embeddings(DecodeHead(head))
    return model
