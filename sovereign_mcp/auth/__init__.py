"""Operator authentication: hashed ``smcp_...`` bearer tokens (:mod:`.tokens`), their FastMCP verifier and
the operator checks tools use (:mod:`.verifier`), and the ``sovereign-mcp token`` commands (:mod:`.cli`)."""

from sovereign_mcp.auth.tokens import OPERATOR, SCOPES, OperatorToken, OperatorTokenStore, TokenInputError

__all__ = ["OPERATOR", "SCOPES", "OperatorToken", "OperatorTokenStore", "TokenInputError"]
