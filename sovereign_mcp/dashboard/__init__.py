"""The operator dashboard, without the MCP layer: login sessions and CSRF (:mod:`.sessions`), the panels'
view models (:mod:`.views`), the ETA estimate (:mod:`.eta`), the inline SVG charts (:mod:`.charts`), the
controls that go through the engines (:mod:`.controls`) and the HTML rendering (:mod:`.render`, templates
and static files beside this file). :mod:`sovereign_mcp.server.dashboard` only registers the routes.
"""
