"""Registers ``diagnose_sglang`` on a FastMCP server (the operator MVP's arguments keep working)."""

from typing import Annotated

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from sovereign_mcp.auth.verifier import caller_is_operator
from sovereign_mcp.diagnostics.engine import MAX_LOG_BYTES, DiagnoseInputError, DiagnosisReport
from sovereign_mcp.diagnostics.service import DiagnosticsService
from sovereign_mcp.server.annotations import READ_ONLY

DIAGNOSE = READ_ONLY

Log = Annotated[str | None, Field(max_length=MAX_LOG_BYTES, description="Pasted SGLang log text, up to 1 MB.")]
Command = Annotated[
    str | None,
    Field(
        max_length=100_000,
        description=(
            "A 'python -m sglang.launch_server ...' line, a 'docker run ...' line or a systemd ExecStart=/Environment= "
            "snippet."
        ),
    ),
]
EnvMap = Annotated[dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=10_000)]],
                  Field(max_length=1000)]
Env = Annotated[EnvMap | Annotated[str, Field(max_length=100_000)] | None,
                Field(description="Environment: a mapping (up to 1000 names) or KEY=VALUE lines (up to 100,000 "
                      "characters).")]
Hardware = Annotated[str | None, Field(max_length=200, description="e.g. 'DGX Spark GB10' (default: the config's).")]
Probe = Annotated[bool, Field(description="Also probe the configured SGLang server (diagnostics.sglang_url).")]
Backend = Annotated[str | None, Field(max_length=50, description="MVP: value of --attention-backend.")]
MemFraction = Annotated[float | None, Field(ge=0, le=1, description="MVP: value of --mem-fraction-static.")]
GraphBs = Annotated[int | None, Field(ge=0, le=100_000, description="MVP: value of --cuda-graph-max-bs.")]
ImageTag = Annotated[str | None, Field(max_length=300, description="MVP: container image (or just its tag).")]


PROBE_REFUSED = ("probe=true is operator-only (it reaches the live SGLang server): call again with "
                 "'Authorization: Bearer <operator token>' (sovereign-mcp token create --scope operator), over "
                 "stdio, or without probe")


def register_diagnostics(mcp: FastMCP, service: DiagnosticsService, operator_auth: bool = True) -> None:
    """Add ``diagnose_sglang`` to ``mcp``; with ``operator_auth`` the live probe needs the operator
    (:func:`~sovereign_mcp.auth.verifier.caller_is_operator`)."""

    @mcp.tool(annotations=DIAGNOSE)
    def diagnose_sglang(
        error_log: Log = None,
        launch_command: Command = None,
        env: Env = None,
        hardware: Hardware = None,
        probe: Probe = False,
        attention_backend: Backend = None,
        mem_fraction: MemFraction = None,
        cuda_graph_max_bs: GraphBs = None,
        image_tag: ImageTag = None,
        error_message: Log = None,
    ) -> DiagnosisReport:
        """Diagnose SGLang problems on this stack (GB10 / DGX Spark) from a log, a launch command, env.

        Check here before suggesting SGLang flags: returns the verdict (valid | valid_with_warnings |
        invalid | unknown), findings ranked by severity (evidence line, problem, fix, source articles),
        the concrete flags/commands to apply and the known-good baseline for the hardware. With
        probe=true the configured server is probed (/health, /server_info, /model_info, /metrics).
        """
        if probe and operator_auth and not caller_is_operator():
            raise ToolError(PROBE_REFUSED)
        url = service.settings.sglang_url if probe else None
        if probe and not url:
            raise ToolError("no SGLang server to probe: set diagnostics.sglang_url in the server config")
        try:
            return service.run(
                error_log=error_log,
                error_message=error_message,
                launch_command=launch_command,
                env=env,
                hardware=hardware,
                probe_url=url,
                attention_backend=attention_backend,
                mem_fraction=mem_fraction,
                cuda_graph_max_bs=cuda_graph_max_bs,
                image_tag=image_tag,
            )
        except DiagnoseInputError as exc:
            raise ToolError(str(exc)) from None
