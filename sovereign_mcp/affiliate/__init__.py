"""The affiliate-link checker: programs as KB data (:mod:`.programs`), links found in Markdown and HTML
(:mod:`.links`), the offline checks (:mod:`.checker`) and the optional live pass over HTTP (:mod:`.live`).
Usable without the MCP layer; ``sovereign-mcp affiliate`` and the paid ``check_affiliate_links`` tool sit on
top."""
