"""The `foundry` command: parse, call services, print.

Exit codes: 0 done; 1 not found (a run, an agent), a check failed (`doctor`), or a delivery was
not answered 200 (`send-test`); 2 invalid or refused (a setting, a flag, a missing database, a
schema not at head); 3 unavailable (the database cannot be reached, the port is taken). An
expected failure prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foundry import __version__, logs, terminal, wiring
from foundry import settings as settings_module
from foundry.clients import receiver
from foundry.clients.errors import OutboundError
from foundry.db import migrate
from foundry.domain.statuses import RunStatus
from foundry.domain.triggers import Decision
from foundry.errors import BadRequest, ConfigError, DatabaseUnavailable, FoundryError, NotFound
from foundry.inbound import agents as agent_bodies
from foundry.services import database_check, doctor, samples
from foundry.services import deliveries as delivery_reads
from foundry.settings import Settings
from foundry.worker import runner, wake

DONE, NOT_FOUND, REFUSED, UNAVAILABLE = 0, 1, 2, 3
SHORT_ID_LENGTH = 8


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":  # a setting that does not load is one of its findings
        return _doctor(args)
    try:
        settings = settings_module.load()
    except ConfigError as exc:
        return _fail(str(exc), REFUSED)
    logs.configure(settings.log_format, settings.log_level)
    try:
        result: int = args.handler(settings, args)
        return result
    except NotFound as exc:
        return _fail(str(exc), NOT_FOUND)
    except DatabaseUnavailable as exc:
        problem = database_check.database_problem(settings.database_url, str(exc))
        return _fail(f"{problem.what}: {problem.fix}", REFUSED if problem.set_up else UNAVAILABLE)
    except FoundryError as exc:
        return _fail(str(exc), REFUSED)
    except KeyboardInterrupt:
        return 130


def _fail(line: str, code: int) -> int:
    print(f"foundry: {line}", file=sys.stderr, flush=True)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foundry",
        description="Foundry turns Linear issues into reviewed pull requests.",
        epilog="Exit codes: 0 done, 1 not found (or a check failed), 2 invalid or refused, 3 unavailable.",
    )
    parser.add_argument("--version", action="version", version=f"foundry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="migrate, then run the web app and the worker in one process")
    _listen_flags(serve)
    serve.set_defaults(handler=_serve)

    web = commands.add_parser("web", help="run the web app under uvicorn (never migrates)")
    _listen_flags(web)
    web.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "1")),
        help="web processes (default WEB_CONCURRENCY or 1)",
    )
    web.set_defaults(handler=_web)

    commands.add_parser(
        "migrate", help="upgrade the database to head (safe to run concurrently)"
    ).set_defaults(handler=_migrate)
    commands.add_parser(
        "worker", help="run the background loops (planning, dispatch, PR checks, outbox, reconcilers)"
    ).set_defaults(handler=_worker)
    _runs_commands(commands)
    commands.add_parser("demo", help="the whole story offline, then the run's timeline").set_defaults(
        handler=_demo
    )
    _agents_commands(commands)
    _deliveries_commands(commands)
    _doctor_command(commands)
    _runner_commands(commands)
    _metrics_commands(commands)
    return parser


def _metrics_commands(commands: Any) -> None:
    metrics = commands.add_parser("metrics", help="the counters /metrics reads").add_subparsers(
        dest="metrics_command", required=True, metavar="ACTION"
    )
    metrics.add_parser(
        "recount",
        help="rebuild the counters from the tables (after restoring a backup or editing rows by hand)",
    ).set_defaults(handler=_metrics_recount)


def _metrics_recount(settings: Settings, args: argparse.Namespace) -> int:
    from foundry.db import tallies

    found = _container(settings).db.transaction_sync(tallies.recount)
    for name, values in found.items():
        total = sum(values.values())
        print(f"{name}: {total} in {len(values)} series")
    return 0


def _runs_commands(commands: Any) -> None:
    runs = commands.add_parser("runs", help="inspect and act on runs").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION"
    )
    listing = runs.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--status", help="only runs in this status: " + ", ".join(RunStatus))
    listing.add_argument("--issue", help="a Linear issue id or identifier (ENG-42)")
    listing.add_argument("--repository", help="only runs in this repository (owner/name)")
    listing.add_argument("--limit", default="50", help="at most this many (1 to 200, default 50)")
    listing.add_argument("--before", help="the page older than this cursor (printed under a full page)")
    listing.add_argument("--offset", default="0", help="skip this many (at most 10000; prefer --before)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_runs_list)
    show = runs.add_parser("show", help="one run: its plan, effects and timeline")
    show.add_argument("run_id", help="the run's id, whole or its 8-character short id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_runs_show)
    for action in ("approve", "reject", "stop", "retry"):
        acting = runs.add_parser(action, help=f"{action} a run as the operator")
        acting.add_argument("run_id", help="the run's id, whole or its 8-character short id")
        acting.add_argument(
            "--actor", default=os.environ.get("USER") or "operator", help="who acts (default $USER)"
        )
        acting.add_argument("--json", action="store_true", help="print JSON")
        acting.set_defaults(handler=_runs_act, action=action)


def _agents_commands(commands: Any) -> None:
    agents = commands.add_parser("agents", help="coding agents and their tokens").add_subparsers(
        dest="agents_command", required=True, metavar="ACTION"
    )
    add = agents.add_parser("add", help="register an agent")
    add.add_argument("name", help="the agent's name")
    add.add_argument(
        "--provider",
        required=True,
        choices=["webhook", "github_actions", "manual"],
        help="how jobs reach it: POSTed to an endpoint, a workflow_dispatch, or recorded for a person",
    )
    add.add_argument("--endpoint", help="the URL jobs are POSTed to (webhook agents)")
    add.add_argument(
        "--config", default="{}", help='JSON, e.g. {"repository": "acme/app", "workflow": "foundry.yml"}'
    )
    add.add_argument("--subscription", action="append", default=[], help="repeat, in order of preference")
    add.set_defaults(handler=_agents_add)
    listing = agents.add_parser("list", help="registered agents")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_agents_list)
    token = agents.add_parser("token", help="issue a new token (revokes the old one); printed once")
    token.add_argument("name", help="the agent's name")
    token.set_defaults(handler=_agents_token)
    revoke = agents.add_parser("revoke", help="revoke the agent's token")
    revoke.add_argument("name", help="the agent's name")
    revoke.set_defaults(handler=_agents_revoke)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from foundry.web import demo

    return demo.run()


def _agents_add(settings: Settings, args: argparse.Namespace) -> int:
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"--config is not JSON: {exc.msg} (at character {exc.pos}).") from exc
    body = {
        "name": args.name,
        "provider": args.provider,
        "endpoint": args.endpoint,
        "config": config,
        "subscriptions": args.subscription,
    }
    spec = agent_bodies.parse(agent_bodies.NewAgent, json.dumps(body).encode()).spec()
    added = _container(settings).agents.add_sync(spec)
    name = added["name"]
    print(f"agent {name} added ({added['provider']}); issue its token with: foundry agents token {name}")
    return 0


def _agents_list(settings: Settings, args: argparse.Namespace) -> int:
    found = _container(settings).agents.list_sync()
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
    print(terminal.table(["NAME", "PROVIDER", "ENDPOINT", "SUBSCRIPTION", "TOKEN"], rows))
    return 0


def _agents_token(settings: Settings, args: argparse.Namespace) -> int:
    issued = _container(settings).agents.issue_token_sync(args.name)
    print(issued["token"])
    print(
        f"# the token for agent {args.name}; it is shown once, store it now"
        + (" (the previous token is revoked)" if issued["revoked"] else ""),
        file=sys.stderr,
    )
    return 0


def _agents_revoke(settings: Settings, args: argparse.Namespace) -> int:
    revoked = _container(settings).agents.revoke_sync(args.name)
    print(f"agent {args.name}: {revoked['revoked']} token(s) revoked")
    return 0


def _listen_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to bind (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="default PORT or 8000"
    )


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from foundry.web import app as web_app

    if not _port_free(args.host, args.port):
        return UNAVAILABLE
    migrate.upgrade(settings.database_url)
    _print_banner(settings, args.host, args.port)
    _print_warnings(settings, args.host)
    container = wiring.build(settings)
    stop = threading.Event()
    alarm = runner.Alarm(wiring.utcnow)
    loops = wiring.worker_loops(settings, container.db, wiring.worker_id(), alarm)
    woken = wake.Wake(settings.database_url).start()
    poll_s = wiring.idle_wait(settings, woken.hearing, alarm)
    worker = threading.Thread(
        target=runner.run,
        args=(loops,),
        kwargs={"stop": stop, "poll_s": poll_s, "wake": woken.event},
        name="foundry-worker",
        daemon=True,
    )
    worker.start()
    try:
        app = web_app.create_app(container, bind_host=args.host)
        uvicorn.run(app, host=args.host, port=args.port, **_uvicorn_options(settings))
    finally:
        stop.set()
        woken.close()
        worker.join(timeout=settings.worker.lease_s)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()
    woken = wake.Wake(settings.database_url)

    def _stop(*_: object) -> None:
        stop.set()
        woken.event.set()  # an idle runner looks up at once

    # SIGTERM (a deploy, a scale-down) lets the unit of work in hand finish, then exits — also
    # one that arrives while the worker is still starting.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    container = _container(settings)
    owner = wiring.worker_id()
    print(f"foundry worker {owner} started", flush=True)
    _print_warnings(settings, None)
    alarm = runner.Alarm(wiring.utcnow)
    loops = wiring.worker_loops(settings, container.db, owner, alarm)
    woken.start()
    try:
        runner.run(
            loops, stop=stop, poll_s=wiring.idle_wait(settings, woken.hearing, alarm), wake=woken.event
        )
    finally:
        woken.close()
    container.db.engine.dispose()
    return 0


def _web(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    _require_head(settings)
    if not _port_free(args.host, args.port):
        return UNAVAILABLE
    processes = "1 process" if args.workers == 1 else f"{args.workers} processes"
    print(
        f"Foundry listening on http://{args.host}:{args.port}  ({processes},"
        f" database: {database_check.safe_url(settings.database_url)})",
        flush=True,
    )
    _print_warnings(settings, args.host)
    os.environ["FOUNDRY_BIND_HOST"] = args.host  # the console asks: served open only on loopback
    uvicorn.run(
        "foundry.web.app:from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        **_uvicorn_options(settings),
    )
    return 0


def _port_free(host: str, port: int) -> bool:
    """Whether `host:port` can be bound (as uvicorn will bind it); if not, says so in one line."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        # create_server's own text repeats the address; a name that does not resolve has no errno.
        why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        _fail(f"cannot listen on {host}:{port}: {why}", UNAVAILABLE)
        return False
    return True


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


def _container(settings: Settings) -> wiring.Container:
    """The services, on a database that exists and whose schema is at head (else one line:
    `SchemaNotAtHead`, or `DatabaseUnavailable` explained by `main`)."""
    missing = database_check.missing_file(settings.database_url)
    if missing is not None:  # connecting would create an empty file where none was meant
        raise ConfigError(f"{missing.what} — {missing.fix}")
    container = wiring.build(settings)
    try:
        container.db.transaction_sync(migrate.require_head, write=False)
    except BaseException:
        container.db.engine.dispose()
        raise
    return container


def _require_head(settings: Settings) -> None:
    """Refuse to start on a database that is missing or behind (each web process builds its own
    container; this one only checks)."""
    _container(settings).db.engine.dispose()


def _print_banner(settings: Settings, host: str, port: int) -> None:
    configured = {
        "linear": settings.linear_webhook_secret,
        "github": settings.github_webhook_secret,
        "slack": settings.slack_signing_secret,
    }
    database = database_check.safe_url(settings.database_url)
    print(f"Foundry listening on http://{host}:{port}  (database: {database})")
    for source, secret in configured.items():
        state = "configured" if secret else "off (no secret set)"
        print(f"  POST http://{host}:{port}/webhooks/{source:<7} {state}")
    api = "on" if settings.api_token else "off (set FOUNDRY_API_TOKEN)"
    print(f"  operator API /api/*                  {api}")


def _print_warnings(settings: Settings, host: str | None) -> None:
    """What `foundry doctor` would flag in these settings alone (no database read), to stderr,
    one line each; `host` is where the web app binds (None: no web app in this process)."""
    found = doctor.configuration(settings, host=host, agents=None)
    for finding in doctor.worth_saying(found):
        print(f"foundry: warning: {finding.line()}", file=sys.stderr, flush=True)


def _runs_list(settings: Settings, args: argparse.Namespace) -> int:
    query = {
        "status": args.status or "",
        "issue": args.issue or "",
        "repository": args.repository or "",
        "before": args.before or "",
        "limit": args.limit,
        "offset": args.offset,
    }
    page = _container(settings).runs.list_sync(query)
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    rows = [
        [
            r["id"][:8],
            r["issue_key"],
            r["status"],
            r["trigger"],
            r["created_at"][:19],
            r["title"][:50],
        ]
        for r in page["runs"]
    ]
    print(terminal.table(["RUN", "ISSUE", "STATUS", "TRIGGER", "CREATED", "TITLE"], rows))
    if page["next_before"] is not None:
        print(f"# older: foundry runs list --before {page['next_before']}", file=sys.stderr)
    return 0


def _runs_act(settings: Settings, args: argparse.Namespace) -> int:
    container = _container(settings)
    operator, run_id = container.operator, _whole_id(container, args.run_id)
    if args.action == "retry":
        result = operator.retry_sync(run_id, args.actor)
        line = f"run {result['retried_from']} retried as {result['run_id']}"
    else:
        result = operator.decide_sync(run_id, Decision(args.action), args.actor, via="cli")
        verb = "now" if result["changed"] else "unchanged:"
        reason = f" ({result['reason']})" if result["reason"] else ""
        line = f"run {result['run_id']} {verb} {result['status']}{reason}"
    print(json.dumps(result, indent=2) if args.json else line)
    return 0


def _whole_id(container: wiring.Container, given: str) -> str:
    """The run's whole id for a short one (`runs list` prints 8 characters): the runs service
    resolves it, or says none or several runs have it."""
    if len(given) == SHORT_ID_LENGTH:
        return str(container.runs.show_sync(given)["run"]["id"])
    return given


def _runs_show(settings: Settings, args: argparse.Namespace) -> int:
    story = _container(settings).runs.show_sync(args.run_id)
    if args.json:
        print(json.dumps(story, indent=2))
        return 0
    print(terminal.run_story(story))
    return 0


def _deliveries_commands(commands: Any) -> None:
    deliveries = commands.add_parser("deliveries", help="inbound webhook deliveries").add_subparsers(
        dest="deliveries_command", required=True, metavar="ACTION"
    )
    listing = deliveries.add_parser("list", help="recent deliveries and their verdicts, newest first")
    listing.add_argument("--source", choices=delivery_reads.SOURCES, help="only from this provider")
    listing.add_argument("--limit", default="50", help="at most this many (1 to 200, default 50)")
    listing.add_argument("--before", help="the page older than this cursor (printed under a full page)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_deliveries_list)
    test = deliveries.add_parser(
        "send-test",
        help="POST a correctly signed sample delivery to a running Foundry and print its answer",
        description="Builds a sample delivery that changes nothing (Linear: a title edit on an unknown"
        " issue; GitHub: a ping; Slack: Approve clicked on a run that does not exist), signs it with"
        " the configured secret, POSTs it and prints the answer. Exit 0 on 200, 1 on any other"
        " answer, 2 when the secret is not set, 3 when the URL cannot be reached.",
    )
    test.add_argument("--source", required=True, choices=samples.SOURCES, help="which provider to act as")
    test.add_argument(
        "--url", help="the receiver to POST to (default FOUNDRY_PUBLIC_URL + /webhooks/<source>)"
    )
    test.set_defaults(handler=_deliveries_send_test)


def _deliveries_list(settings: Settings, args: argparse.Namespace) -> int:
    query = {"source": args.source or "", "limit": args.limit, "before": args.before or ""}
    found = _container(settings).deliveries.list_sync(query)
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
    print(terminal.table(["RECEIVED", "SOURCE", "EVENT", "VERDICT", "RUN", "KEY"], rows))
    if found["next_before"] is not None:
        print(f"# older: foundry deliveries list --before {found['next_before']}", file=sys.stderr)
    return 0


# What an answer other than 200 most likely means, for the person who just pasted a secret.
_SEND_TEST_HINTS = {
    401: "the signature was refused: this secret differs from the one the running Foundry has",
    404: "nothing answers at that path: is the URL the receiver's (…/webhooks/<source>)?",
    503: "the running Foundry has no secret for this source (or its database is down)",
}


def _deliveries_send_test(settings: Settings, args: argparse.Namespace) -> int:
    source = args.source
    name = samples.SECRETS[source]
    secret = getattr(settings, name.removeprefix("FOUNDRY_").lower())
    if not secret:
        return _fail(f"{name} is not set: there is no secret to sign the sample with", REFUSED)
    sample = samples.build(source, secret.get_secret_value(), now=datetime.now(UTC), nonce=str(uuid.uuid4()))
    url = args.url or settings.public_url.rstrip("/") + sample.path
    try:
        status, body = receiver.post(url, sample.body, sample.headers)
    except OutboundError as exc:
        return _fail(f"cannot reach {url}: {str(exc).removeprefix(exc.service + ': ')}", UNAVAILABLE)
    print(f"POST {url} answered {status}")
    print(body)
    if status == 200:
        return DONE
    if status in _SEND_TEST_HINTS:
        print(f"foundry: {_SEND_TEST_HINTS[status]}", file=sys.stderr)
    return NOT_FOUND


def _doctor_command(commands: Any) -> None:
    check = commands.add_parser(
        "doctor",
        help="check the set-up, one line per check; exit 1 on any failure",
        description="Checks the settings, the database and its schema, the webhook secrets, the"
        " write-back credentials, FOUNDRY_PUBLIC_URL, the page's protection, the agents and the"
        " repositories. ✔ fine, - not set up (optional), ! works with less than expected,"
        " ✘ must be fixed (exit 1).",
    )
    check.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address `foundry web` binds (as its --host; default 127.0.0.1): off loopback the"
        " page and API need FOUNDRY_API_TOKEN",
    )
    check.add_argument("--json", action="store_true", help="print JSON")


def _doctor(args: argparse.Namespace) -> int:
    try:
        settings = settings_module.load()
    except ConfigError as exc:
        found = [doctor.settings_failed(str(exc))]
    else:
        loaded = doctor.settings_loaded(settings_module.config_path(os.environ))
        found = [loaded, *doctor.check(settings, host=args.host)]
    if args.json:
        print(json.dumps([{"level": f.level, "text": f.text, "fix": f.fix} for f in found], indent=2))
    else:
        print(terminal.findings(found, sys.stdout.encoding))
    return NOT_FOUND if doctor.failing(found) else DONE


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
