"""The trivial baseline for the HTTP figures of search_speed.py: FastMCP with one tool that returns a constant
and a ``/health`` route, under uvicorn on its own socket (``mcp.run(transport="http")``), stateless JSON like
``sovereign-mcp serve``. Usage: ``python benchmarks/_trivial_server.py PORT``."""

from __future__ import annotations

import sys

from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import JSONResponse

mcp = FastMCP(name="trivial")


@mcp.tool
def ping(query: str = "") -> dict[str, str]:
    """Return a constant."""
    return {"pong": query}


@mcp.custom_route("/health", methods=["GET"])
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[1]), path="/mcp", stateless_http=True,
            json_response=True, log_level="warning", show_banner=False)
