"""Alt text from the local vision model, through the inference chain (providers, breakers, sovereign mode).

The image goes as an OpenAI ``image_url`` content part with a ``data:`` URI (OpenAI Chat Completions "image
inputs"; SGLang and llama.cpp's server accept the same shape for vision models), at temperature 0. The
instructions follow the W3C WAI Images Tutorial's decision tree: decorative -> ``alt=""`` (no model call when
the caller says so); functional -> the action; text in the image -> that text; complex -> a short alt plus a
long description; informative -> what it means in context, the most important first, no "image of". The
answer is asked as one JSON object; an answer that is not JSON is used as the alt text, with a warning. The
alt text is then checked with :func:`sovereign_mcp.alttext.lint.lint_alt`.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from sovereign_mcp.alttext.config import AltTextSettings
from sovereign_mcp.alttext.images import Image
from sovereign_mcp.alttext.lint import ROLES, Role, lint_alt
from sovereign_mcp.inference.client import ChatClient
from sovereign_mcp.inference.errors import InferenceError

INSTRUCTIONS = """You write alt text for one image on a technical blog, following the W3C WAI images \
decision tree.
- decorative (adds nothing to the text, pure ornament): alt is "".
- functional (a link or button): alt says what activating it does.
- text (the image is mainly text): alt is that text, exactly.
- complex (chart, diagram, screenshot full of detail): a short alt, plus a long_description with the data or \
the steps.
- informative (anything else): what the image shows that matters in this context, most important first, in \
one sentence, ideally under 125 characters.
Never start with "image of", "picture of" or "photo of"; never use the file name; no marketing words.
Answer with one JSON object and nothing else: {"role": "<decorative|functional|text|complex|informative>", \
"alt": "...", "long_description": null or "...", "text_in_image": null or "..."}"""


class CaptionUnavailable(RuntimeError):
    """No provider of the inference chain could caption the image (the message names each one's failure)."""


class CaptionResult(BaseModel):
    """Alt text for one image, ready to paste."""

    alt: str = Field(description="The alt attribute ('' for a decorative image).")
    role: Role
    long_description: str | None = Field(None, description="For complex images: the data or steps in words.")
    text_in_image: str | None = None
    warnings: list[str] = Field(default_factory=list, description="WAI checks of the alt text, and notes.")
    html: str = Field(description="An <img> element with this alt.")
    markdown: str = Field(description="The Markdown image with this alt.")
    provider: str | None = Field(None, description="The inference provider that answered (None: no call).")


def _json_object(text: str) -> dict[str, Any] | None:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match is None:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(value: Any) -> str | None:
    return " ".join(value.split()) if isinstance(value, str) and value.strip() else None


class Captioner:
    """Captions images with ``chat``; ``lease()`` is held around each model call (the SGLang service's GPU
    lease when the vision model lives there, see :mod:`sovereign_mcp.alttext.service`)."""

    def __init__(self, settings: AltTextSettings, chat: ChatClient,
                 lease: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        self.settings = settings
        self.chat = chat
        self.lease = lease

    def caption(self, image: Image, context: str | None = None, role: Role | None = None,
                src: str = "image.png") -> CaptionResult:
        """Alt text for ``image`` in ``context`` (the surrounding paragraph), as ``role`` when given.

        Raises:
            CaptionUnavailable: no inference provider answered (nothing is charged for it).
        """
        if role == "decorative":
            return self._result("", role, None, None, [], src, None)
        prompt = f"Context: {context.strip()}" if context and context.strip() else "Context: none given."
        prompt += f"\nRole: {role} (given by the author)." if role else "\nRole: decide it."
        messages = [{"role": "system", "content": INSTRUCTIONS},
                    {"role": "user", "content": [{"type": "text", "text": prompt},
                                                 {"type": "image_url", "image_url": {"url": image.data_uri()}}]}]
        try:
            with self.lease():
                completion = self.chat.complete(messages, max_tokens=self.settings.max_tokens, temperature=0.0,
                                                deadline=self.settings.deadline_seconds)
        except InferenceError as exc:
            raise CaptionUnavailable(f"no vision model answered: {exc}") from exc
        notes: list[str] = []
        answer = _json_object(completion.text or "")
        if answer is None:
            notes.append("the model did not answer JSON; its whole answer is used as the alt text")
            answer = {"alt": completion.text}
        chosen = role or (answer.get("role") if answer.get("role") in ROLES else "informative")
        alt = _text(answer.get("alt")) or ""
        long_description = _text(answer.get("long_description"))
        text_in_image = _text(answer.get("text_in_image"))
        if chosen == "decorative":
            alt = ""
        elif chosen == "text" and text_in_image and not alt:
            alt = text_in_image
        if chosen == "complex" and not long_description:
            notes.append("a complex image needs a long description; the model gave none: write it in the text")
        return self._result(alt, chosen, long_description, text_in_image, notes, src, completion.provider)  # type: ignore[arg-type]

    def _result(self, alt: str, role: Role, long_description: str | None, text_in_image: str | None,
                notes: list[str], src: str, provider: str | None) -> CaptionResult:
        warnings = [f"{p.rule_id}: {p.message}" for p in lint_alt(alt, role, self.settings.max_alt_chars)] + notes
        markdown_alt = alt.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        return CaptionResult(alt=alt, role=role, long_description=long_description, text_in_image=text_in_image,
                             warnings=warnings, html=f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">',
                             markdown=f"![{markdown_alt}]({src})", provider=provider)
