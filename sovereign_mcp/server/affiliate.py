"""Registers ``check_affiliate_links`` on a FastMCP server (paid by name through the payments layer, like
``validate_quality``). The live pass is for operator callers only, and only with ``[affiliate] live``."""

from __future__ import annotations

from typing import Annotated

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from sovereign_mcp.affiliate.service import AffiliateInputError, AffiliateReport, AffiliateService
from sovereign_mcp.auth.verifier import caller_is_operator
from sovereign_mcp.gate.engine import MAX_INPUT_BYTES
from sovereign_mcp.server.annotations import READ_ONLY
from sovereign_mcp.server.quality import KindArg, L402Arg

Text = Annotated[str | None, Field(max_length=MAX_INPUT_BYTES, description=(
    "Markdown or HTML (or a podcast script / show notes with kind='podcast'), up to 2 MB; or give slug."))]
Slug = Annotated[str | None, Field(max_length=200, description="A published article's slug instead of text.")]
Live = Annotated[bool, Field(description="Operator only, with [affiliate] live: also fetch each link (redirects, "
                             "dead links, stripped ids, soft 404s).")]

LIVE_REFUSED = ("live=true is operator-only (it sends requests to the linked hosts): call again with "
                "'Authorization: Bearer <operator token>', or without live")


def register_affiliate(mcp: FastMCP, service: AffiliateService, operator_auth: bool = True) -> None:
    """Add ``check_affiliate_links`` to ``mcp``."""

    @mcp.tool(annotations=READ_ONLY)
    def check_affiliate_links(text: Text = None, slug: Slug = None, kind: KindArg = "article", live: Live = False,
                              l402: L402Arg = None) -> AffiliateReport:
        """Check the affiliate links of an article or podcast script (deterministic, offline by default).

        Per link to a known program (Amazon Associates, Awin, ShareASale: the KB's 'affiliate' entries): the id
        parameter is there and is the operator's, HTML links carry rel="sponsored"; the program's disclosure
        comes before the first link (FTC 16 CFR 255), or in a script a spoken disclosure before the ad read.
        Links to other hosts are never flagged. Same report as validate_quality: verdict (fail on any
        high-severity finding), counts and findings with line, column, message and suggestion.
        """
        if live and ((operator_auth and not caller_is_operator()) or not service.settings.live):
            raise ToolError(LIVE_REFUSED if service.settings.live else
                            "the live pass is off on this server ([affiliate] live = false)")
        try:
            return service.check(text=text, slug=slug, kind=kind, live=live)
        except AffiliateInputError as exc:
            raise ToolError(str(exc)) from None
