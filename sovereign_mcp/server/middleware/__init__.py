"""FastMCP middleware of the server, one concern per module; their order (outermost first) is the one list in
:func:`sovereign_mcp.server.bootstrap.mcp_middleware`."""
