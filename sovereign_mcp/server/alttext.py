"""Registers ``caption_image`` on a FastMCP server (paid by name through the payments layer, like
``validate_quality``): alt text for an image from the local vision model."""

from __future__ import annotations

from typing import Annotated

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from sovereign_mcp.alttext.captioner import CaptionResult, CaptionUnavailable
from sovereign_mcp.alttext.images import ImageInputError
from sovereign_mcp.alttext.lint import Role
from sovereign_mcp.alttext.service import AltTextService
from sovereign_mcp.server.annotations import READ_ONLY
from sovereign_mcp.server.quality import L402Arg

ImageArg = Annotated[str, Field(min_length=1, max_length=8 * 1024 * 1024, description=(
    "The image: base64 or a data: URI (PNG, JPEG or WebP, up to 5 MB decoded), or a "
    "pipeline://jobs/{id}/artifacts/{name} URI."))]
Context = Annotated[str | None, Field(max_length=20_000, description=(
    "The paragraph around the image, or the slug of the article it belongs to."))]
RoleArg = Annotated[Role | None, Field(description=(
    "informative | decorative | functional | complex | text (default: the model decides)."))]


def register_alttext(mcp: FastMCP, service: AltTextService) -> None:
    """Add ``caption_image`` to ``mcp``."""

    @mcp.tool(annotations=READ_ONLY)
    def caption_image(image: ImageArg, context: Context = None, role: RoleArg = None,
                      l402: L402Arg = None) -> CaptionResult:
        """Alt text for an image, written by the local vision model after the W3C WAI images decision tree.

        Returns alt (empty for a decorative image), the role, a long description for complex images, the text
        in the image, WAI warnings about the alt text, and ready <img> / Markdown snippets. No provider
        reachable: an error, and the call is not charged.
        """
        try:
            return service.caption(image, context, role)
        except (ImageInputError, CaptionUnavailable) as exc:
            raise ToolError(str(exc)) from None
