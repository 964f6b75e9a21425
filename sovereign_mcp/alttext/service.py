"""The captioner as a service: the image from base64, a ``data:`` URI or a pipeline artifact URI, the context
from a paragraph or an article slug, and the GPU lease around the model call.

The GPU rule: when the vision model lives on the managed SGLang service, a caption holds that service's lease
through the GPU manager while it runs, so no switch can stop SGLang under it. A caption never starts or switches
a GPU service itself (that takes minutes: cooldown, memory guard, model load); when SGLang is not loaded the chain
is asked as it is (a fallback provider may answer) and the reason is logged. The pipeline's ``hero_alt`` step is a
job step and does switch to SGLang when its turn comes.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sovereign_mcp.alttext.captioner import Captioner, CaptionResult
from sovereign_mcp.alttext.config import AltTextSettings
from sovereign_mcp.alttext.images import Image, ImageInputError, from_bytes, from_text
from sovereign_mcp.alttext.lint import Role
from sovereign_mcp.gpu.errors import GPUError
from sovereign_mcp.inference.client import ChatClient

log = logging.getLogger(__name__)

ARTIFACT_URI = re.compile(r"^pipeline://jobs/(?P<job>[0-9a-f]{8,64})/artifacts/(?P<name>[\w.-]{1,100})$")


def gpu_lease(gpu: Callable[[], Any], service: str | None, wait_seconds: float
              ) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context-manager factory holding ``service``'s GPU lease while it is loaded (``gpu()`` is the GPU manager;
    ``service`` ``None``: the model is not on a managed service). ``wait_seconds`` bounds the wait for the lease
    of a running service (a switch in progress)."""

    @contextlib.contextmanager
    def lease() -> Iterator[None]:
        if service is None:
            yield
            return
        try:
            manager = gpu()
            state = next((s.state for s in manager.status().services if s.name == service), "stopped")
            if state != "running":  # starting it is a switch of minutes: not for one caption
                log.info("caption_image: %s is %s, not loaded; asking the inference chain as it is", service, state)
                yield
                return
            held = manager.acquire(service, job_id="caption_image", timeout=wait_seconds)
        except GPUError as exc:
            log.warning("caption_image: no lease on %s (%s); asking the inference chain as it is", service, exc)
            yield
            return
        with held:
            yield

    return lease


class AltTextService:
    """Captions from ``chat()`` under ``lease()``; ``artifact(job_id, name) -> (path, mime)`` reads pipeline
    artifacts; ``article(slug) -> text or None`` turns a slug given as context into the article's title and
    description."""

    def __init__(self, settings: AltTextSettings, chat: Callable[[], ChatClient],
                 lease: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                 artifact: Callable[[str, str], tuple[Path, str]] | None = None,
                 article: Callable[[str], str | None] = lambda slug: None) -> None:
        self.settings = settings
        self._chat = chat
        self._lease = lease
        self._artifact = artifact
        self._article = article

    def load(self, image: str) -> tuple[Image, str]:
        """``(image, src for the snippet)`` from base64, a data URI or a ``pipeline://`` artifact URI.

        Raises:
            ImageInputError: unreadable, not PNG/JPEG/WebP, too large, or an unknown artifact.
        """
        match = ARTIFACT_URI.match(image.strip())
        if match is None:
            return from_text(image, self.settings.max_image_bytes), "image.png"
        if self._artifact is None:
            raise ImageInputError("pipeline artifacts are not available on this server")
        try:
            path, _ = self._artifact(match.group("job"), match.group("name"))
            data = path.read_bytes()
        except (KeyError, OSError) as exc:
            raise ImageInputError(f"no such pipeline artifact: {image.strip()} ({exc})") from None
        return from_bytes(data, self.settings.max_image_bytes), match.group("name")

    def caption(self, image: str, context: str | None = None, role: Role | None = None) -> CaptionResult:
        """Alt text for ``image`` (see :meth:`load`) in ``context`` (a paragraph, or an article slug).

        Raises:
            ImageInputError: see :meth:`load`.
            CaptionUnavailable: no provider answered.
        """
        loaded, src = self.load(image)
        if context and re.fullmatch(r"[a-z0-9][a-z0-9-]{0,199}", context.strip()):
            context = self._article(context.strip()) or context
        return Captioner(self.settings, self._chat(), self._lease).caption(loaded, context, role, src)
