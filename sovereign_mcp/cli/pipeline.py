"""``sovereign-mcp pipeline``: queue, follow and cancel content jobs; show the GPU services."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from sovereign_mcp.cli.common import settings_from, setup_logging
from sovereign_mcp.config import ConfigError, Settings


def _pipeline_service(settings: Settings) -> Any:
    from sovereign_mcp.pipeline.service import PipelineService
    from sovereign_mcp.search.store import open_index

    loaded: list[Any] = []

    def articles() -> Any:  # the index is opened only when sources or the gate need it
        if not loaded:
            loaded.append(open_index(settings)[0])
        return loaded[0].articles

    return PipelineService(settings, articles=articles)


def _print_job(status: Any, service: Any) -> None:
    print(f"job {status.job_id}  {status.kind}  {status.topic!r}")
    print(f"state: {status.state}  ({status.done_steps} of {status.total_steps} steps)  {status.message}")
    if status.error:
        print(f"error: {status.error}")
    for step in status.steps:
        where = step.service or "cpu"
        extra = f"  {step.error}" if step.error else ""
        print(f"  {step.index + 1:>2}. {step.name:<20} {where:<8} {step.state:<9} attempt {step.attempt}{extra}")
    for gate in status.gate:
        c = gate.counts
        print(f"gate: {gate.track} attempt {gate.attempt}: {gate.verdict} ({c.get('error', 0)} errors, "
              f"{c.get('warning', 0)} warnings)")
        for finding in gate.findings[:10] if gate.verdict == "fail" else []:
            print(f"    [{finding.get('rule_id')}] {finding.get('message')}")
    for artifact in status.artifacts:
        path, _ = service.artifact(status.job_id, artifact.name)
        print(f"artifact: {artifact.name}  {artifact.mime_type}  {artifact.bytes} bytes  sha256 {artifact.sha256}  "
              f"{path}")


def _follow(service: Any, job_id: str, as_json: bool) -> int:
    from sovereign_mcp.pipeline.models import FINISHED

    service.start_worker()  # stands by while another process (the server) holds the worker lock
    last = None
    try:
        while True:
            status = service.status(job_id)
            line = f"[{status.done_steps}/{status.total_steps}] {status.state}: {status.message}"
            if line != last and not as_json:
                print(line, flush=True)
                last = line
            if status.state in FINISHED:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print(f"stopped following {job_id}; it stays queued (a server worker or 'pipeline status {job_id} --wait' "
              "continues it)", file=sys.stderr)
        return 130
    finally:
        service.worker.stop()
    if as_json:
        print(status.model_dump_json(indent=2))
    else:
        _print_job(status, service)
    return 0 if status.state == "done" else 1


def cmd_pipeline(args: argparse.Namespace) -> int:
    from sovereign_mcp.pipeline.service import PipelineInputError
    from sovereign_mcp.pipeline.store import JobNotFound, JobNotRetriable

    settings = settings_from(args)
    setup_logging(settings.log_level if args.log_level else "warning")
    service = _pipeline_service(settings)
    action = args.pipeline_command
    try:
        if action == "run":
            options: dict[str, Any] = {}
            for item in args.option or []:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ConfigError(f"--option needs KEY=VALUE, got {item!r}")
                try:
                    options[key.strip()] = json.loads(value)
                except ValueError:
                    options[key.strip()] = value
            try:
                ticket = service.submit(args.kind, args.topic, args.source, options)
            except PipelineInputError as exc:
                raise ConfigError(str(exc)) from None
            if not args.wait:
                print(ticket.model_dump_json(indent=2) if args.json else
                      f"queued job {ticket.job_id} ({args.kind}, {len(ticket.steps)} steps); "
                      f"follow it with: sovereign-mcp pipeline status {ticket.job_id} --wait")
                return 0
            if not args.json:
                print(f"queued job {ticket.job_id}", flush=True)
            return _follow(service, ticket.job_id, args.json)
        if action == "status":
            if args.job_id is None:
                jobs = service.list().jobs
                if args.json:
                    print(json.dumps([j.model_dump(mode="json") for j in jobs], indent=2))
                for j in [] if args.json else jobs:
                    print(f"{j.job_id}  {j.kind:<10} {j.state:<9} {j.done_steps}/{j.total_steps}  {j.topic[:60]!r}  "
                          f"{j.message}")
                return 0
            if args.wait:
                service.status(args.job_id)
                return _follow(service, args.job_id, args.json)
            status = service.status(args.job_id)
            if args.json:
                print(status.model_dump_json(indent=2))
            else:
                _print_job(status, service)
            return 0
        if action == "retry":
            try:
                status = service.retry(args.job_id)
            except JobNotRetriable as exc:
                print(f"sovereign-mcp pipeline retry: {exc}", file=sys.stderr)
                return 1
            if args.wait:
                return _follow(service, args.job_id, args.json)
            print(status.model_dump_json(indent=2) if args.json else f"{status.job_id}: {status.state} "
                  f"({status.message}); follow it with: sovereign-mcp pipeline status {status.job_id} --wait")
            return 0
        if action == "cancel":
            status = service.cancel(args.job_id)
            print(status.model_dump_json(indent=2) if args.json else f"{status.job_id}: {status.state} "
                  f"({status.message})")
            return 0
        info = service.services()
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        roles = ", ".join(f"{role} -> {name or 'not managed'}" for role, name in info["roles"].items())
        print(f"roles: {roles}")
        pending = ", ".join(f"{k} {v}" for k, v in sorted(info["pending_steps"].items())) or "none"
        print(f"active jobs: {info['active_jobs']}; pending steps: {pending}")
        gpu = info.get("gpu")
        if gpu is None:
            print("GPU management off (pipeline.manage_gpu = false)")
            return 0
        for s in gpu["services"]:
            print(f"  {s['name']:<20} {s['kind']:<8} {s['state']:<9} {s['memory_gb']:>6.1f} GB  leases {s['leases']}"
                  + (f"  {s['detail']}" if s["detail"] else ""))
        if gpu.get("cooldown_until"):
            left = gpu["cooldown_until"] - time.time()
            if left > 0:
                print(f"cooldown: {left:.0f} s left after {gpu['last_stop_service']} stopped")
        if gpu.get("mem_available_gb") is not None:
            print(f"MemAvailable: {gpu['mem_available_gb']} GB")
        return 0
    except JobNotFound as exc:
        print(f"sovereign-mcp: {exc}", file=sys.stderr)
        return 1
    finally:
        service.close()
