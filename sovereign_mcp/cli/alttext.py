"""``sovereign-mcp caption``: alt text for an image file from the local vision model; ``sovereign-mcp
alt-lint``: the WAI checks of the alt text already in Markdown/HTML files (exit 1 on an error)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

ROLE_CHOICES = ["informative", "decorative", "functional", "complex", "text"]


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``caption`` and ``alt-lint``."""
    caption = sub.add_parser("caption", parents=[common], help="alt text for an image from the local vision model",
                             description="Ask the inference chain's vision model ([inference] providers; SGLang's "
                             "GPU lease is taken when it is managed) for WAI-style alt text of IMAGE.")
    caption.add_argument("image", type=Path, metavar="IMAGE", help="PNG, JPEG or WebP file")
    caption.add_argument("--context", help="the paragraph around the image, or the article's slug")
    caption.add_argument("--role", choices=ROLE_CHOICES, help="default: the model decides")
    caption.add_argument("--json", action="store_true", help="print the full result as JSON")
    lint = sub.add_parser("alt-lint", parents=[common], help="check the alt text of images in Markdown/HTML files",
                          description="WAI checks of every ![alt](src) and <img> outside code: missing or "
                          "placeholder alt, file names, 'image of', over about 125 characters.")
    lint.add_argument("files", nargs="+", metavar="FILE", help="Markdown/HTML files; '-' reads stdin")
    lint.add_argument("--format", choices=["text", "json", "sarif"], default="text")


def cmd_caption(args: argparse.Namespace) -> int:
    from sovereign_mcp.alttext.captioner import CaptionUnavailable
    from sovereign_mcp.alttext.images import ImageInputError
    from sovereign_mcp.alttext.service import AltTextService, gpu_lease
    from sovereign_mcp.cli.common import settings_from, setup_logging
    from sovereign_mcp.gpu.manager import GPUServiceManager
    from sovereign_mcp.inference.client import ChatClient
    from sovereign_mcp.inference.shared import SharedBreakers
    from sovereign_mcp.pipeline.deps import gpu_service_for

    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "warning")
    chat = ChatClient(settings.inference, shared=SharedBreakers(settings.data_dir / "inference-breakers.sqlite3"))
    lease = gpu_lease(lambda: GPUServiceManager(settings.gpu, settings.data_dir), gpu_service_for(settings, "sglang"),
                      settings.alt_text.gpu_wait_seconds)
    service = AltTextService(settings.alt_text, lambda: chat, lease)
    try:
        data = args.image.read_bytes()
        result = service.caption(base64.b64encode(data).decode("ascii"), args.context, args.role)
    except (OSError, ImageInputError) as exc:
        print(f"sovereign-mcp caption: {args.image}: {exc}", file=sys.stderr)
        return 2
    except CaptionUnavailable as exc:
        print(f"sovereign-mcp caption: {exc}", file=sys.stderr)
        return 1
    finally:
        chat.close()
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(result.markdown.replace("(image.png)", f"({args.image.name})"))
        if result.long_description:
            print(f"long description: {result.long_description}")
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_alt_lint(args: argparse.Namespace) -> int:
    from sovereign_mcp.alttext.lint import lint_document
    from sovereign_mcp.cli.common import settings_from
    from sovereign_mcp.gate.engine import GateInputError, decode_input
    from sovereign_mcp.gate.render import render_sarif, render_text

    settings = settings_from(args)
    reports = []
    for name in args.files:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            reports.append((name, lint_document(decode_input(raw), settings.alt_text.max_alt_chars)))
        except (OSError, GateInputError) as exc:
            print(f"sovereign-mcp alt-lint: {name}: {exc}", file=sys.stderr)
            return 2
    if args.format == "sarif":
        print(render_sarif(reports, {}))
    elif args.format == "json":
        print(json.dumps({"reports": [{"file": n, **r.model_dump(mode="json")} for n, r in reports]}, indent=2))
    else:
        print("\n".join(render_text(report, name) for name, report in reports))
    return 1 if any(r.verdict == "fail" for _, r in reports) else 0
