"""``[affiliate]``: the operator's affiliate ids and the limits of the optional live pass.

Nested in the global settings as ``affiliate: AffiliateSettings``. A leaf (pydantic only).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AffiliateSettings(BaseModel):
    """The operator's ids per program (and marketplace) and the live pass's bounds."""

    model_config = ConfigDict(extra="forbid")

    ids: dict[str, str] = Field(default_factory=dict, description=(
        "The operator's affiliate ids: the link's domain with '_' for '.' (amazon_de, amazon_co_uk), or "
        "the program's name (awin) for every domain of the program; a link whose id differs is flagged, a "
        "program without an id here is only checked for a missing id."))
    live: bool = Field(False, description="Allow the live pass (HTTP requests to the linked hosts) in the "
                       "server, for operator callers only; the CLI's --live needs no setting.")
    max_hops: int = Field(8, ge=1, le=20, description="Redirects followed per link (4 or more are flagged).")
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="One HTTP request of the live pass, s.")
    budget_seconds: float = Field(120.0, gt=0, le=3600, description="The whole live pass, s; links left over "
                                  "are reported as not checked.")
    per_host_rate: str = Field("1/second", description="Requests per host, as the limits library parses it "
                               "('1/second', '30/minute').")
