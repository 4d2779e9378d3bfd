"""What a workload costs: tokens x price per million tokens, for a few example price lists.

    >>> estimate_costs(1_000_000, 0, 1, [Price("cheap", 0.5, 2.0)])[0].total_cost
    0.5
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from playground.limits import LIMITS, shown
from playground.tokenization.errors import TokenizationError


@dataclass(frozen=True)
class Price:
    name: str
    input_per_million: float  # currency units per 1,000,000 input tokens
    output_per_million: float


# EXAMPLES ONLY, not live prices: round numbers in the range providers charged in 2024-2025 for a
# small, a mid-size and a large hosted model. The user edits them in the table.
EXAMPLE_PRICES = (
    Price("example: small model", 0.15, 0.60),
    Price("example: mid-size model", 1.00, 4.00),
    Price("example: large model", 5.00, 15.00),
)


@dataclass(frozen=True)
class CostEstimate:
    name: str
    input_tokens: int
    output_tokens: int
    requests: int
    input_cost: float
    output_cost: float

    @property
    def total_cost(self) -> float:
        return self.input_cost + self.output_cost


def parse_prices(rows: Iterable[Sequence[Any]]) -> list[Price]:
    """(name, input price, output price) rows -> prices; blank rows skipped, bad numbers rejected."""
    prices = []
    for number, row in enumerate(rows, start=1):
        cells = list(row) + [None] * (3 - len(row))
        name = str(cells[0] if cells[0] is not None else "").strip()
        if len(name) > LIMITS.name_chars:  # a name is shown in every result row: cut, never echoed whole
            name = name[:LIMITS.name_chars] + "…"
        if not name and all(cell in (None, "") for cell in cells[1:3]):
            continue
        values = []
        for column, cell in (("input", cells[1]), ("output", cells[2])):
            try:
                value = float(cell)
            except (TypeError, ValueError):
                raise TokenizationError(f"Price row {number} ({name or 'unnamed'}): the {column} price must be a "
                                        f"number (per million tokens), got {shown(cell)}.") from None
            if not np.isfinite(value) or value < 0:
                raise TokenizationError(f"Price row {number} ({name or 'unnamed'}): the {column} price must be "
                                        f"zero or more, got {value}.")
            values.append(value)
        prices.append(Price(name or f"row {number}", values[0], values[1]))
    return prices


def estimate_costs(input_tokens: int, output_tokens: int, requests: int, prices: Sequence[Price]) -> list[CostEstimate]:
    """cost = requests x (input tokens x input price + output tokens x output price) / 1,000,000."""
    for label, value in (("Input tokens", input_tokens), ("Output tokens", output_tokens), ("Requests", requests)):
        if value is None or value < 0 or int(value) != value:
            raise TokenizationError(f"{label} must be a whole number of zero or more, got {value}.")
    return [
        CostEstimate(price.name, int(input_tokens), int(output_tokens), int(requests),
                     requests * input_tokens * price.input_per_million / 1e6,
                     requests * output_tokens * price.output_per_million / 1e6)
        for price in prices
    ]


def costs_payload(estimates: Sequence[CostEstimate]) -> dict[str, Any]:
    return {"note": "prices come from the table; its defaults are examples, not live prices",
            "estimates": [{**dataclasses.asdict(item), "total_cost": item.total_cost} for item in estimates]}
