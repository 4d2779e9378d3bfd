"""The output head in int8, one scale per row, for CPU decoding (torch's weight-only int8 kernel).

The head turns the last hidden state into one logit per vocabulary token: SmolLM2-135M's is 49,152 x 576,
113 MB in fp32, read in full for every generated token -- with int4 decoder matrices it was ~35% of a step.
Here each row (one token's output vector) is stored as int8 codes and one scale: w ≈ q·scale with
q ∈ -127..127 and scale = max|row| / 127, a quarter of the bytes. Rows keep their own scale, so a rare
token's small vector is not crushed by a frequent token's large one (4-bit groups of 32 cost KL 0.06 here;
this costs a KL that benchmarks.engine measures in the same run as the speed).

Worked example (a row of 4): w = [0.5, -1.27, 0.02, 1.0] -> scale 1.27/127 = 0.01, q = [50, -127, 2, 100],
dequantized q·0.01 = [0.5, -1.27, 0.02, 1.0].
"""

from __future__ import annotations

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


def quantize_output_head(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the model's output head (`get_output_embeddings()`, an nn.Linear) for Int8RowLinear, in place.
    A head tied to the input embeddings is copied, so the embeddings stay fp32."""
    head = model.get_output_embeddings()
    if int8_head_available() and isinstance(head, torch.nn.Linear) and head.bias is None:
        model.set_output_embeddings(Int8RowLinear(head))
    return model
