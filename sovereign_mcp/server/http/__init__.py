"""ASGI layers around the HTTP app, one concern per module; their order (outermost first) is the one list in
:func:`sovereign_mcp.server.bootstrap.http_guards`."""
