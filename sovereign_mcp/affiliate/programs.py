"""Affiliate programs as knowledge-base data: KB entries of ``type: affiliate`` (scope ``affiliate``).

A program says which hosts carry its links, which query parameter holds the affiliate id, which short-link
hosts hide the id (it cannot be checked offline), what the operator must disclose, and what a podcast host
says when reading an ad for it. The operator's own ids come from the config, not the KB
(``[affiliate] ids``): the link's domain with its dots as underscores (``amazon_de`` for ``amazon.de``,
``amazon_co_uk``), falling back to the program's name (``awin``) for every domain of the program.

A leaf: imports only pydantic and the KB's base model.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from sovereign_mcp.kb.entry_types import EntryData

AFFILIATE = "affiliate"  # the entry type, and the scope its entries live in


def _host(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    if not host or "/" in host or " " in host:
        raise ValueError(f"{value!r} is not a host name (no scheme, no path)")
    return host


class AffiliateProgram(EntryData):
    """``affiliate``: one program's link hosts, id parameter, disclosure and spoken cues."""

    program: str = Field(pattern=r"^[a-z][a-z0-9]*$", description="Name, and the fallback key in [affiliate] ids.")
    domains: list[str] = Field(min_length=1, description="Link hosts: the host or any subdomain of it.")
    short_domains: list[str] = Field(default_factory=list, description="Short-link hosts (the id is behind a "
                                     "redirect: only the live pass can check it).")
    id_params: list[str] = Field(min_length=1, description="Query parameters that carry the affiliate id.")
    disclosures: list[str] = Field(min_length=1, description="Texts that count as this program's disclosure "
                                   "(case-insensitive); one must come before the first link.")
    spoken_disclosures: list[str] = Field(default_factory=list, description="What a host says aloud before an "
                                          "ad read (podcast scripts); the written disclosures count too.")
    mentions: list[str] = Field(default_factory=list, description="Names a host says when reading an ad for "
                                "the program (podcast scripts), matched as whole words.")

    @field_validator("domains", "short_domains")
    @classmethod
    def _hosts(cls, values: list[str]) -> list[str]:
        return [_host(v) for v in values]

    def owns(self, host: str) -> str | None:
        """The domain of this program that ``host`` belongs to (itself or a subdomain), or ``None``."""
        host = host.lower().rstrip(".")
        for domain in (*self.domains, *self.short_domains):
            if host == domain or host.endswith("." + domain):
                return domain
        return None

    def is_short(self, domain: str) -> bool:
        return domain in self.short_domains

    def id_key(self, domain: str) -> str:
        """The ``[affiliate] ids`` key for links on ``domain`` (``amazon_co_uk``)."""
        return domain.replace(".", "_").replace("-", "_")


AFFILIATE_TYPES: dict[str, type[EntryData]] = {AFFILIATE: AffiliateProgram}
"""Entry type -> data model, merged into the KB loader's types."""
