"""The room's answers beside the model's: data in (poll results as plain dicts), plotly Figure out."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import plotly.graph_objects as go

from playground.figures.style import MUTED, PALETTE, empty_figure, legend_below, styled
from playground.tokenization import token_label


def next_token_poll_figure(rows: Sequence[Mapping[str, Any]], model_top: Sequence[Mapping[str, Any]],
                           revealed: bool, title: str) -> go.Figure:
    """Grouped bars per token: the room's share of guesses and (once revealed) the model's probability.

    `rows`: one per distinct guess (guess, count, share, text, prob, rank); `model_top`: the model's top
    tokens (text, prob, rank), shown after the reveal even when nobody guessed them."""
    if not rows and not revealed:
        return empty_figure("No guesses yet: type your guess for the next token.", title)
    labels: list[str] = []
    room: dict[str, float] = {}
    model: dict[str, float] = {}
    hover: dict[str, str] = {}
    for row in rows:
        label = token_label(row["text"])
        labels.append(label)
        room[label] = room.get(label, 0.0) + row["share"]
        model[label] = row["prob"]
        hover[label] = f"rank {row['rank']:,} of the vocabulary"
    if revealed:
        for token in model_top:
            label = token_label(token["text"])
            if label not in model:
                labels.append(label)
                model[label] = token["prob"]
                hover[label] = f"rank {token['rank']}"
    labels = list(dict.fromkeys(labels))
    figure = go.Figure()
    figure.add_bar(y=labels, x=[100 * room.get(label, 0.0) for label in labels], orientation="h",
                   name="the room's guesses (% of answers)", marker_color=PALETTE[1],
                   hovertemplate="%{y}: %{x:.1f}% of the room<extra></extra>")
    if revealed:
        figure.add_bar(y=labels, x=[100 * model.get(label, 0.0) for label in labels], orientation="h",
                       name="the model's probability (%)", marker_color=PALETTE[0],
                       customdata=[hover[label] for label in labels],
                       hovertemplate="%{y}: p = %{x:.2f}%, %{customdata}<extra></extra>")
    figure.update_layout(barmode="group")
    figure.update_xaxes(title_text="percent", range=[0, 100])
    figure.update_yaxes(title_text="token", autorange="reversed", type="category")
    return legend_below(styled(figure, title, height=max(320, 90 + 56 * len(labels))))


def yes_no_poll_figure(tally: Sequence[tuple[str, int]], truth: Mapping[str, Any] | None, title: str) -> go.Figure:
    """Yes / no counts; after the reveal the model's answer is marked and explained in the title."""
    counts = dict(tally)
    answers = ["yes", "no"]
    right = truth.get("answer") if truth else None
    colours = [PALETTE[2] if answer == right else (MUTED if right else PALETTE[0]) for answer in answers]
    figure = go.Figure(go.Bar(x=answers, y=[counts.get(answer, 0) for answer in answers], marker_color=colours,
                              text=[counts.get(answer, 0) for answer in answers], textposition="auto",
                              hovertemplate="%{x}: %{y} answers<extra></extra>"))
    figure.update_xaxes(title_text="answer" + (f" (the model: {right})" if right else ""))
    figure.update_yaxes(title_text="answers", rangemode="tozero", dtick=1 if sum(counts.values()) < 10 else None)
    return styled(figure, title, height=360)
