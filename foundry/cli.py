"""The `foundry` command: parse, call services, print."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foundry import logs, wiring
from foundry import settings as settings_module
from foundry.db import migrate
from foundry.domain.triggers import Decision
from foundry.errors import ConfigError, FoundryError, NotFound
from foundry.inbound import agents as agent_bodies
from foundry.services import deliveries as delivery_reads
from foundry.services import startup_checks
from foundry.settings import Settings
from foundry.worker import runner


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_module.load()
        logs.configure(settings.log_format, settings.log_level)
        result: int = args.handler(settings, args)
        return result
    except NotFound as exc:
        print(f"foundry: {exc}", file=sys.stderr)
        return 1
    except FoundryError as exc:
        print(f"foundry: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foundry", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then run the web app (all in one)")
    _listen_flags(serve)
    serve.set_defaults(handler=_serve)

    web = commands.add_parser("web", help="run the web app under uvicorn")
    _listen_flags(web)
    web.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    web.set_defaults(handler=_web)

    commands.add_parser("migrate", help="upgrade the database to head").set_defaults(handler=_migrate)
    commands.add_parser("worker", help="run the background loops (planning, outbox)").set_defaults(
        handler=_worker
    )

    runs = commands.add_parser("runs", help="inspect runs").add_subparsers(dest="runs_command", required=True)
    listing = runs.add_parser("list", help="recent runs")
    listing.add_argument("--status")
    listing.add_argument("--issue", help="a Linear issue id or identifier (ENG-42)")
    listing.add_argument("--limit", default="50")
    listing.add_argument("--offset", default="0")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_runs_list)
    show = runs.add_parser("show", help="one run and its timeline")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_runs_show)
    for action in ("approve", "reject", "stop", "retry"):
        acting = runs.add_parser(action, help=f"{action} a run as the operator")
        acting.add_argument("run_id")
        acting.add_argument("--actor", default=os.environ.get("USER") or "operator")
        acting.add_argument("--json", action="store_true")
        acting.set_defaults(handler=_runs_act, action=action)
    commands.add_parser("demo", help="the whole story offline, then the run's timeline").set_defaults(
        handler=_demo
    )
    _agents_commands(commands)
    _deliveries_commands(commands)
    _runner_commands(commands)
    return parser


def _agents_commands(commands: Any) -> None:
    agents = commands.add_parser("agents", help="coding agents and their tokens").add_subparsers(
        dest="agents_command", required=True
    )
    add = agents.add_parser("add", help="register an agent")
    add.add_argument("name")
    add.add_argument("--provider", required=True, choices=["webhook", "github_actions", "manual"])
    add.add_argument("--endpoint", help="the URL jobs are POSTed to (webhook agents)")
    add.add_argument(
        "--config", default="{}", help='JSON, e.g. {"repository": "acme/app", "workflow": "foundry.yml"}'
    )
    add.add_argument("--subscription", action="append", default=[], help="repeat, in order of preference")
    add.set_defaults(handler=_agents_add)
    listing = agents.add_parser("list", help="registered agents")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_agents_list)
    token = agents.add_parser("token", help="issue a new token (revokes the old one); printed once")
    token.add_argument("name")
    token.set_defaults(handler=_agents_token)
    revoke = agents.add_parser("revoke", help="revoke the agent's token")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_agents_revoke)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from foundry.web import demo

    return demo.run()


def _agents_add(settings: Settings, args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "provider": args.provider,
        "endpoint": args.endpoint,
        "config": json.loads(args.config),
        "subscriptions": args.subscription,
    }
    spec = agent_bodies.parse(agent_bodies.NewAgent, json.dumps(body).encode()).spec()
    added = wiring.build(settings).agents.add_sync(spec)
    name = added["name"]
    print(f"agent {name} added ({added['provider']}); issue its token with: foundry agents token {name}")
    return 0


def _agents_list(settings: Settings, args: argparse.Namespace) -> int:
    found = wiring.build(settings).agents.list_sync()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    rows = [
        [
            a["name"],
            a["provider"],
            a["endpoint"] or "",
            a["current_subscription"] or "",
            "yes" if a["has_active_token"] else "no",
        ]
        for a in found
    ]
    print(_table(["NAME", "PROVIDER", "ENDPOINT", "SUBSCRIPTION", "TOKEN"], rows))
    return 0


def _agents_token(settings: Settings, args: argparse.Namespace) -> int:
    issued = wiring.build(settings).agents.issue_token_sync(args.name)
    print(issued["token"])
    print(
        f"# the token for agent {args.name}; it is shown once, store it now"
        + (" (the previous token is revoked)" if issued["revoked"] else ""),
        file=sys.stderr,
    )
    return 0


def _agents_revoke(settings: Settings, args: argparse.Namespace) -> int:
    revoked = wiring.build(settings).agents.revoke_sync(args.name)
    print(f"agent {args.name}: {revoked['revoked']} token(s) revoked")
    return 0


def _listen_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from foundry.web import app as web_app

    migrate.upgrade(settings.database_url)
    _print_banner(settings, args.host, args.port)
    _print_warnings(settings)
    container = wiring.build(settings)
    stop = threading.Event()
    loops = wiring.worker_loops(settings, container.db, wiring.worker_id())
    worker = threading.Thread(
        target=runner.run,
        args=(loops,),
        kwargs={"stop": stop, "poll_s": settings.worker.poll_s},
        name="foundry-worker",
        daemon=True,
    )
    worker.start()
    try:
        app = web_app.create_app(container)
        uvicorn.run(app, host=args.host, port=args.port, **_uvicorn_options(settings))
    finally:
        stop.set()
        worker.join(timeout=settings.worker.lease_s)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()
    # SIGTERM (a deploy, a scale-down) lets the unit of work in hand finish, then exits — also
    # one that arrives while the worker is still starting.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _require_head(settings)
    container = wiring.build(settings)
    owner = wiring.worker_id()
    print(f"foundry worker {owner} started", flush=True)
    _print_warnings(settings)
    runner.run(wiring.worker_loops(settings, container.db, owner), stop=stop, poll_s=settings.worker.poll_s)
    container.db.engine.dispose()
    return 0


def _web(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    _require_head(settings)
    _print_warnings(settings)
    uvicorn.run(
        "foundry.web.app:from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        **_uvicorn_options(settings),
    )
    return 0


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `foundry web` and `foundry serve` tell uvicorn: past `web.limit_concurrency` open
    connections and tasks it answers 503 (a flood is refused, not fatal), and an idle keep-alive
    connection is closed after `web.keepalive_s`."""
    return {
        "limit_concurrency": settings.web.limit_concurrency,
        "timeout_keep_alive": settings.web.keepalive_s,
        "access_log": False,
        "log_level": "warning",
    }


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    migrate.upgrade(settings.database_url)
    print(f"database at {migrate.head()}")
    return 0


def _require_head(settings: Settings) -> None:
    container = wiring.build(settings)
    try:
        container.db.transaction_sync(migrate.require_head, write=False)
    finally:
        container.db.engine.dispose()


def _print_banner(settings: Settings, host: str, port: int) -> None:
    configured = {
        "linear": settings.linear_webhook_secret,
        "github": settings.github_webhook_secret,
        "slack": settings.slack_signing_secret,
    }
    print(f"Foundry listening on http://{host}:{port}  (database: {_safe_url(settings)})")
    for source, secret in configured.items():
        state = "configured" if secret else "off (no secret set)"
        print(f"  POST http://{host}:{port}/webhooks/{source:<7} {state}")
    api = "on" if settings.api_token else "off (set FOUNDRY_API_TOKEN)"
    print(f"  operator API /api/*                  {api}")


def _print_warnings(settings: Settings) -> None:
    """What this configuration leaves off, to stderr, one line each."""
    for line in startup_checks.warnings(settings):
        print(f"foundry: warning: {line}", file=sys.stderr, flush=True)


def _safe_url(settings: Settings) -> str:
    url = settings.database_url
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def _runs_list(settings: Settings, args: argparse.Namespace) -> int:
    query = {
        "status": args.status or "",
        "issue": args.issue or "",
        "limit": args.limit,
        "offset": args.offset,
    }
    page = wiring.build(settings).runs.list_sync(query)
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    rows = [
        [
            r["id"][:8],
            r["linear_identifier"],
            r["status"],
            r["trigger"],
            r["created_at"][:19],
            r["title"][:50],
        ]
        for r in page["runs"]
    ]
    print(_table(["RUN", "ISSUE", "STATUS", "TRIGGER", "CREATED", "TITLE"], rows))
    return 0


def _runs_act(settings: Settings, args: argparse.Namespace) -> int:
    operator = wiring.build(settings).operator
    if args.action == "retry":
        result = operator.retry_sync(args.run_id, args.actor)
        line = f"run {result['retried_from']} retried as {result['run_id']}"
    else:
        result = operator.decide_sync(args.run_id, Decision(args.action), args.actor, via="cli")
        verb = "now" if result["changed"] else "unchanged:"
        reason = f" ({result['reason']})" if result["reason"] else ""
        line = f"run {result['run_id']} {verb} {result['status']}{reason}"
    print(json.dumps(result, indent=2) if args.json else line)
    return 0


def _runs_show(settings: Settings, args: argparse.Namespace) -> int:
    story = wiring.build(settings).runs.show_sync(args.run_id)
    if args.json:
        print(json.dumps(story, indent=2))
        return 0
    run = story["run"]
    print(f"run {run['id']}  {run['linear_identifier']}  {run['status']}")
    print(f"  {run['title']}")
    print(f"  opened {run['created_at']} by {run['trigger']}, attempt {run['attempt']}")
    print()
    rows = [
        [str(e["seq"]), e["created_at"][:19], e["kind"], e["actor"] or "", _short(e["data"])]
        for e in story["timeline"]
    ]
    print(_table(["#", "AT", "EVENT", "ACTOR", "DETAIL"], rows))
    print(f"\n{len(story['deliveries'])} deliveries attached")
    return 0


def _deliveries_commands(commands: Any) -> None:
    deliveries = commands.add_parser("deliveries", help="inbound webhook deliveries").add_subparsers(
        dest="deliveries_command", required=True
    )
    listing = deliveries.add_parser("list", help="recent deliveries and their verdicts, newest first")
    listing.add_argument("--source", choices=delivery_reads.SOURCES)
    listing.add_argument("--limit", default="50")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_deliveries_list)


def _deliveries_list(settings: Settings, args: argparse.Namespace) -> int:
    query = {"source": args.source or "", "limit": args.limit}
    found = wiring.build(settings).deliveries.list_sync(query)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    rows = [
        [
            d["received_at"][:19].replace("T", " "),
            d["source"],
            d["event"],
            d["verdict"],
            (d["run_id"] or "-")[:8],
            d["delivery_key"],
        ]
        for d in found["deliveries"]
    ]
    print(_table(["RECEIVED", "SOURCE", "EVENT", "VERDICT", "RUN", "KEY"], rows))
    return 0


def _runner_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "runner",
        help="the reference coding agent: signed jobs in at POST /jobs, one pull request per run out",
        description="Serves jobs at POST /jobs until SIGTERM: each job's command runs in a git worktree of"
        " the run's branch, what it changed is committed and pushed, and one PR is opened per run."
        " --command is one string split into arguments like a shell would (shlex), but never run by one."
        " The token comes from FOUNDRY_AGENT_TOKEN, GitHub's from FOUNDRY_GITHUB_TOKEN.",
    )
    serve.add_argument("--agent", help="this agent's name in Foundry (runner.agent)")
    _runner_flags(serve, default=None)
    serve.add_argument("--host", help="where to listen (runner.host, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="runner.port, default 8100")
    serve.add_argument(
        "--max-jobs", type=int, help="jobs done at once; more wait in the queue (runner.max_jobs)"
    )
    serve.set_defaults(handler=_runner_serve)
    once = serve.add_subparsers(dest="runner_command").add_parser(
        "once", help="do one job from a file, report it, exit 0 once its PR is open (for CI runners)"
    )
    once.add_argument("--job-file", required=True, type=Path, help="the job's JSON, as Foundry sends it")
    _runner_flags(once, default=argparse.SUPPRESS)
    once.set_defaults(handler=_runner_once)


def _runner_flags(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--workdir", default=default, help="clones, worktrees and the job store (runner.workdir)"
    )
    parser.add_argument(
        "--command",
        dest="cmd",
        default=default,
        help="the coding command, split with shlex and never run by a shell; an argument that is exactly"
        " {prompt_file}, {job_file} or {cost_file} becomes that file's path (runner.command)",
    )
    parser.add_argument("--timeout-s", type=float, default=default, help="kill a command running longer")


def _runner_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from foundry.runner import options
    from foundry.runner import wiring as runner_wiring

    chosen = options.resolve(
        settings,
        agent=args.agent,
        workdir=args.workdir,
        command=args.cmd,
        host=args.host,
        port=args.port,
        max_jobs=args.max_jobs,
        timeout_s=args.timeout_s,
    )
    parts = runner_wiring.build(chosen)
    logs.use_secrets(wiring.secret_values(settings))
    try:
        listening = socket.create_server((chosen.host, chosen.port))
    except OSError as exc:
        parts.close()
        where = f"{chosen.host}:{chosen.port}"
        print(f"foundry: the runner cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        return 3
    parts.start()
    print(
        f"foundry runner {chosen.agent} listening on http://{chosen.host}:{chosen.port}/jobs"
        f"  (workdir {chosen.workdir}, {chosen.max_jobs} at once)",
        flush=True,
    )
    print(f"  command: {shlex.join(chosen.command)}  (run without a shell)", flush=True)
    config = uvicorn.Config(parts.app(), log_level="warning", access_log=False)
    # uvicorn stops serving on SIGTERM or SIGINT, then raises the signal again for the handler it
    # found: this one lets the process go on to stop the pool (running jobs are requeued).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        uvicorn.Server(config).run(sockets=[listening])
    finally:
        parts.stop()
        listening.close()
    return 0


def _runner_once(settings: Settings, args: argparse.Namespace) -> int:
    from foundry.runner import options
    from foundry.runner import wiring as runner_wiring

    chosen = options.resolve(settings, workdir=args.workdir, command=args.cmd, timeout_s=args.timeout_s)
    try:
        raw = args.job_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the job file {args.job_file}: {exc.strerror}") from exc
    parts = runner_wiring.build(chosen)
    logs.use_secrets(wiring.secret_values(settings))
    # A cancelled CI job sends SIGTERM: the command is stopped and the job kept to be done again.
    signal.signal(signal.SIGTERM, lambda *_: parts.pool.interrupt())
    try:
        outcome, undelivered = parts.once(raw)
    finally:
        parts.close()
    return _once_result(outcome.state, outcome.detail, undelivered)


def _once_result(state: str, detail: dict[str, Any], undelivered: int) -> int:
    if state == "queued":
        print("foundry: the job was interrupted; run it again to finish it", file=sys.stderr)
        return 3
    if state != "done":
        print(f"foundry: the job {state}: {detail.get('reason', 'no reason recorded')}", file=sys.stderr)
        return 1
    print(f"pull request #{detail['pr_number']}: {detail['pr_url']}")
    if undelivered:
        print(f"foundry: {undelivered} report(s) could not be delivered to Foundry", file=sys.stderr)
        return 3
    return 0


def _short(data: Any) -> str:
    text = ", ".join(f"{k}={v}" for k, v in (data or {}).items() if v not in (None, ""))
    return text if len(text) <= 60 else text[:57] + "..."


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)
