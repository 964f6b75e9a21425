"""Operator authentication: hashed ``smcp_...`` bearer tokens (:mod:`.tokens`), their FastMCP verifier and
the operator checks tools use (:mod:`.verifier`), and the ``sovereign-mcp token`` commands (:mod:`.cli`).
Import from those modules (this ``__init__`` stays empty so importing a submodule loads nothing else)."""
