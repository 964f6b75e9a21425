"""Observability: Prometheus metrics (:mod:`.metrics`) and structured, redacted logs with a request id
(:mod:`.logs`). Usable without the MCP layer; :mod:`sovereign_mcp.server.metrics` wires both into the HTTP app."""
