"""sovereign-mcp: a self-hosted MCP server for a small operator's local AI stack."""

__version__ = "0.1.0"
