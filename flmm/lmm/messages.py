"""Conversations in the transformers chat format, and their validation.

A conversation is a list of ``{"role": "system" | "user" | "assistant", "content": str | list[part]}``
where a part is ``{"type": "text", "text": ...}`` or ``{"type": "image"}``. Exactly one image part
(in a user turn) is supported: flmm grounds on one image at a time.
"""

from __future__ import annotations

from typing import Any

from flmm.errors import InputError

Message = dict[str, Any]
ROLES = ("system", "user", "assistant")


def conversation(question: str, answer: str | None = None, system: str | None = None) -> list[Message]:
    """A one-turn conversation with the image before the question; with ``answer`` for teacher forcing."""
    msgs: list[Message] = []
    if system:
        msgs.append({"role": "system", "content": [{"type": "text", "text": system}]})
    msgs.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


def _parts(message: Message) -> list[dict]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise InputError(f"message content must be a string or a list of parts; got {content!r:.80}")


def validate_messages(messages: list[Message], generation: bool) -> None:
    """Raise :class:`InputError` unless ``messages`` is a usable conversation.

    ``generation=False`` (teacher forcing): the last message is a non-empty assistant answer.
    ``generation=True``: the last message is a user turn.
    """
    if not isinstance(messages, list) or not messages:
        raise InputError("the conversation must be a non-empty list of {'role', 'content'} messages")
    n_images = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InputError(f"message {i} must be a dict with role in {ROLES}; got {m!r:.80}")
        for p in _parts(m):
            if p.get("type") == "image":
                if m["role"] != "user":
                    raise InputError("the image placeholder must be in a user message")
                n_images += 1
            elif p.get("type") == "text":
                if not isinstance(p.get("text"), str):
                    raise InputError(f"message {i}: text parts need a string 'text'")
            else:
                raise InputError(f"message {i}: unknown part type {p.get('type')!r} (use 'text' or 'image')")
    if n_images != 1:
        raise InputError(
            f"the conversation has {n_images} image placeholders; put exactly one "
            "{'type': 'image'} part in a user message (see flmm.lmm.messages.conversation)"
        )
    last = messages[-1]
    text = "".join(p.get("text", "") for p in _parts(last) if p.get("type") == "text")
    if generation:
        if last["role"] != "user":
            raise InputError("for generation the conversation must end with a user message")
        if not any(p.get("text", "").strip() for m in messages for p in _parts(m) if p.get("type") == "text"):
            raise InputError("the question is empty")
    else:
        if last["role"] != "assistant":
            raise InputError("to capture an answer the conversation must end with an assistant message")
        if not text.strip():
            raise InputError("the assistant answer is empty")
