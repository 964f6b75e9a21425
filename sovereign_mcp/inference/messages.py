"""Chat message clean-up before sending: merge consecutive messages of the same role.

Why (the ``chat_template`` of mistralai models on Hugging Face raises this; OpenHands hit it with
``enable_prompt_extensions``): Mistral's chat template, as served by SGLang, answers HTTP 400
``Conversation roles must alternate user/assistant/user/assistant/...`` when two user (or two assistant)
messages follow each other; the fix is to merge them client-side. Merging is harmless for every other
OpenAI-compatible server, so it is always done.

Shape: OpenAI chat messages, ``{"role": "system"|"user"|"assistant"|"tool", "content": str | list[part]}``
where a part is e.g. ``{"type": "text", "text": "..."}``. Only plain ``system``/``user``/``assistant``
messages (keys ``role``, ``content`` and an equal ``name``) merge; tool calls and tool results keep their
identity. Text is joined with a blank line; list contents are concatenated part by part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MERGEABLE_ROLES = frozenset({"system", "user", "assistant"})
_PLAIN_KEYS = frozenset({"role", "content", "name"})
SEPARATOR = "\n\n"


def _plain(message: Mapping[str, Any]) -> bool:
    return message["role"] in MERGEABLE_ROLES and set(message) <= _PLAIN_KEYS


def _parts(content: Any) -> list[Any]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content)


def _join(a: Any, b: Any) -> Any:
    if (a is None or isinstance(a, str)) and (b is None or isinstance(b, str)):
        return SEPARATOR.join(text for text in (a, b) if text)
    return _parts(a) + _parts(b)


def merge_consecutive_roles(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A new list where runs of plain same-role messages are merged into one; the input is not modified.

    Raises:
        ValueError: a message is not a mapping with a string ``role``.
    """
    merged: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ValueError(f"message {index} must be a mapping with a string 'role'")
        previous = merged[-1] if merged else None
        if (previous is not None and previous["role"] == message["role"] and _plain(previous) and _plain(message)
                and previous.get("name") == message.get("name")):
            previous["content"] = _join(previous.get("content"), message.get("content"))
        else:
            merged.append(dict(message))
    return merged
