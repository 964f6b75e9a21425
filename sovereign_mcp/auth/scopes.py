"""The scopes an operator token may carry (a leaf: the CLI's parser reads them without the token store)."""

from __future__ import annotations

OPERATOR = "operator"
SCOPES: tuple[str, ...] = (OPERATOR,)
"""Scopes a token may carry. One for now; a new scope is added here and checked where it is granted."""
