"""The chat template's cost: the prompt the template renders from messages, tokenized, with which
tokens are the messages' own content and which the template adds (`chat_template_view`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from playground.limits import shown
from playground.tokenization.errors import TokenizationError
from playground.tokenization.table import Tokenization, backend_for, tokenize_text

CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatTemplateView:
    """A conversation rendered through a chat template, token by token.

    roles[i] is 'special' (a special token), 'content' (inside a message's text) or 'template'
    (text the template added: role names, newlines, a default system prompt).
    """

    prompt: str
    tokens: Tokenization
    roles: tuple[str, ...]
    content_spans: tuple[tuple[int, int], ...]
    content_alone_tokens: int  # the messages' texts tokenized one by one, without the template

    @property
    def overhead_tokens(self) -> int:
        """What the template costs: prompt tokens beyond those of the bare message texts."""
        return len(self.tokens) - self.content_alone_tokens

    def role_count(self, role: str) -> int:
        return sum(1 for value in self.roles if value == role)

    def payload(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "ids": list(self.tokens.ids),
            "tokens": list(self.tokens.pieces),
            "starts": self.tokens.starts.tolist(),
            "ends": self.tokens.ends.tolist(),
            "roles": list(self.roles),
            "content_spans": [list(span) for span in self.content_spans],
            "counts": {"total": len(self.tokens), "special": self.role_count("special"),
                       "template": self.role_count("template"), "content": self.role_count("content"),
                       "content_alone": self.content_alone_tokens, "template_overhead": self.overhead_tokens},
        }


def clean_messages(rows: Iterable[Sequence[Any]]) -> list[dict[str, str]]:
    """(role, content) rows -> chat messages; blank rows are skipped, unknown roles rejected."""
    messages = []
    for number, row in enumerate(rows, start=1):
        role = str(row[0] if len(row) > 0 and row[0] is not None else "").strip().lower()
        content = str(row[1] if len(row) > 1 and row[1] is not None else "")
        if not role and not content.strip():
            continue
        if role not in CHAT_ROLES:
            raise TokenizationError(f"Message {number}: role must be one of {', '.join(CHAT_ROLES)}, got {shown(role)}.")
        messages.append({"role": role, "content": content})
    return messages


def _content_spans(prompt: str, messages: Sequence[dict[str, str]]) -> list[tuple[int, int]]:
    """Where each message's text sits in the rendered prompt (templates may trim it)."""
    spans = []
    position = 0
    for message in messages:
        for content in (message["content"], message["content"].strip()):
            if not content:
                break
            found = prompt.find(content, position)
            if found >= 0:
                spans.append((found, found + len(content)))
                position = found + len(content)
                break
    return spans


def chat_template_view(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True,
                       name: str = "model", label: str | None = None) -> ChatTemplateView:
    """Render messages with the tokenizer's chat template and classify every prompt token."""
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizationError("This tokenizer has no chat template (base models often have none); "
                                "load an instruct/chat model to see one.")
    if not messages:
        raise TokenizationError("Add at least one message (a role and its text) to render the chat template.")
    try:
        prompt = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                               add_generation_prompt=add_generation_prompt)
    except Exception as error:  # jinja raises its own errors, e.g. "roles must alternate"
        raise TokenizationError(f"The chat template rejected these messages: {error}") from error
    # The template already wrote its special tokens as text: add none (what apply_chat_template does).
    tokens = tokenize_text(prompt, tokenizer, name, label, add_special_tokens=False)
    spans = _content_spans(prompt, messages)
    inside = np.zeros(len(prompt) + 1, dtype=np.int64)  # prefix sums of "this character is content"
    for start, end in spans:
        inside[start + 1:end + 1] += 1
    inside = np.cumsum(inside)
    roles = []
    for index, (start, end) in enumerate(tokens.spans()):
        if index in tokens.special:
            roles.append("special")
        elif end == start and roles:  # the rest of a character the previous token started
            roles.append(roles[-1])
        elif end > start and inside[end] - inside[start] == end - start:
            roles.append("content")
        else:
            roles.append("template")
    alone = sum(len(backend_for(tokenizer).rust.encode(message["content"], add_special_tokens=False).ids)
                for message in messages)
    return ChatTemplateView(prompt, tokens, tuple(roles), tuple(spans), alone)
