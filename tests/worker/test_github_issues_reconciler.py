"""The GitHub Issues reconciler does what missed `issues` deliveries would have done, once: a
labelled issue without a run gets one (never a second, whichever worker or webhook comes too),
and a run whose issue was closed, deleted or unlabelled is stopped once. GitHub is the fake
GitHub served over real HTTP."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.clients.github_issues import GitHubIssuesClient
from foundry.db import database, runs
from foundry.domain import trackers
from foundry.services import github_issues_reconciler
from foundry.services.delivery import Delivery
from foundry.services.github_issues_reconciler import GitHubIssuesReconciler
from foundry.services.intake import Intake
from foundry.settings import Settings
from foundry.web.app import create_app
from tests import servers
from tests.factories import GITHUB_SECRET, github_issue_body, github_issue_request
from tests.github_fake import GitHubFake
from tests.worker.conftest import Clock, status

TOKEN = "ghs_reconciler_test"
REPO = "acme/widgets"
INTERVAL_S = 300
# The trigger label's id in the webhook fixtures (`github_issues_labeled.json`).
WEBHOOK_LABEL_ID = "7012345678"

Sql = Callable[[str], Any]


@pytest.fixture
def github() -> Iterator[tuple[GitHubFake, GitHubIssuesClient]]:
    fake = GitHubFake(TOKEN)
    with servers.in_thread(fake.app) as url:
        fake.base_url = url
        client = GitHubIssuesClient(TOKEN, base_url=url)
        yield fake, client
        client.close()


@pytest.fixture
def make(
    db: database.Database, clock: Clock, github: tuple[GitHubFake, GitHubIssuesClient]
) -> Callable[..., GitHubIssuesReconciler]:
    """A reconciler as a worker builds one; `due` moves the clock to its first pass."""

    def build(*, repositories: tuple[str, ...] = (REPO,), due: bool = True) -> GitHubIssuesReconciler:
        built = GitHubIssuesReconciler(
            db,
            github=github[1],
            intake=Intake(db, approvers=(), max_runs_per_day=10),
            repositories=repositories,
            label="foundry",
            clock=clock,
            interval=timedelta(seconds=INTERVAL_S),
        )
        if due:
            clock.advance(INTERVAL_S)
        return built

    return build


@pytest.fixture
def web(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = make_settings(github_webhook_secret=GITHUB_SECRET)
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        yield client


def post_webhook(web: TestClient, fixture: str, node_id: str, number: int = 42) -> dict[str, Any]:
    raw, headers = github_issue_request(fixture, github_issue_body(fixture, number=number, node_id=node_id))
    answer = web.post("/webhooks/github", content=raw, headers=headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def run_of(db: database.Database, node_id: str) -> str:
    found = db.transaction_sync(lambda tx: runs.active_id(tx, node_id, trackers.GITHUB))
    assert found is not None
    return found


def stops(db: database.Database, run_id: str) -> list[tuple[str, str]]:
    timeline = db.transaction_sync(lambda tx: runs.timeline(tx, run_id))
    return [(e["actor"], e["data"]["reason"]) for e in timeline if e["kind"] == "stopped"]


def a_run_with_its_pr(
    db: database.Database, make: Callable[..., GitHubIssuesReconciler], fake: GitHubFake
) -> tuple[GitHubIssuesReconciler, str]:
    """Issue #42 reconciled into a run, which then got its PR."""
    node = fake.put_issue(REPO, 42)["node_id"]
    loop = make()
    assert loop.reconcile_once() == 1
    run_id = run_of(db, node)
    db.transaction_sync(lambda tx: runs.update(tx, run_id, {"pr_number": 7}))
    return loop, run_id


def passes(loop: GitHubIssuesReconciler, clock: Clock, n: int = 2) -> list[int]:
    """`n` passes, one interval apart."""
    done = []
    for _ in range(n):
        done.append(loop.reconcile_once())
        clock.advance(INTERVAL_S + 1)
    return done


# --- opening ------------------------------------------------------------------------------------


def test_a_labelled_issue_without_a_run_gets_exactly_one_run(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    fake = github[0]
    node = fake.put_issue(REPO, 42, title="Add CSV export")["node_id"]
    fake.put_issue(REPO, 43, pull_request=True)  # a labelled PR: GitHub lists it among issues
    fake.put_issue(REPO, 44, labels=("bug",))
    loop = make()
    assert passes(loop, clock, 3) == [1, 0, 0]
    assert make().reconcile_once() == 0  # another worker's reconciler
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    run = status(db, run_of(db, node))
    assert (run["tracker"], run["issue_id"], run["issue_key"]) == ("github", node, "acme/widgets#42")
    # The label's id, as GitHub lists it: an `unlabeled` webhook names it when the label goes.
    assert (run["trigger"], run["title"], run["trigger_label_id"]) == (
        "reconciler",
        "Add CSV export",
        "7012345007",
    )
    assert run["issue_url"] == "https://github.com/acme/widgets/issues/42"
    assert sql("SELECT count(*) FROM webhook_deliveries") == 1
    assert sql("SELECT delivery_key FROM webhook_deliveries") == f"reconcile:{node}"


def test_an_issue_whose_run_ended_is_not_opened_again(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    fake = github[0]
    node = fake.put_issue(REPO, 42)["node_id"]
    loop = make()
    assert loop.reconcile_once() == 1
    fake.put_issue(REPO, 42, state="closed")
    clock.advance(INTERVAL_S)
    assert loop.reconcile_once() == 1  # stopped: its issue closed
    fake.put_issue(REPO, 42)  # reopened, still labelled: a person starts a new run, not a poll
    assert passes(loop, clock) == [0, 0]
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql(f"SELECT status FROM foundry_runs WHERE issue_id = '{node}'") == "stopped"


def test_a_linear_issue_with_the_same_id_does_not_count_as_a_github_issues_run(
    db: database.Database, open_run: Callable[..., str]
) -> None:
    open_run(issue="I_kwDOsharedid")  # a Linear run whose issue id happens to match
    found = db.transaction_sync(lambda tx: runs.issues_with_runs(tx, ["I_kwDOsharedid"], trackers.GITHUB))
    assert found == set()
    assert db.transaction_sync(lambda tx: runs.issues_with_runs(tx, ["I_kwDOsharedid"])) == {"I_kwDOsharedid"}


@pytest.mark.parametrize("round_", range(3))
def test_two_reconcilers_at_once_open_one_run(
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    round_: int,
) -> None:
    github[0].put_issue(REPO, 42)
    loops = [make(due=False), make()]
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def reconcile(loop: GitHubIssuesReconciler) -> None:
        barrier.wait(timeout=10)
        answers.append(loop.reconcile_once())

    threads = [threading.Thread(target=reconcile, args=(loop,)) for loop in loops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers) == [0, 1]
    assert sql("SELECT count(*) FROM foundry_runs") == 1


def test_a_webhook_after_the_reconciler_attaches_to_its_run(
    db: database.Database,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    web: TestClient,
) -> None:
    node = github[0].put_issue(REPO, 42)["node_id"]
    assert make().reconcile_once() == 1
    answer = post_webhook(web, "github_issues_labeled", node)
    assert (answer["outcome"], answer["run_id"]) == ("attached", run_of(db, node))
    assert sql("SELECT count(*) FROM foundry_runs") == 1


def test_a_webhook_before_the_reconciler_leaves_it_nothing_to_do(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    web: TestClient,
) -> None:
    node = github[0].put_issue(REPO, 42)["node_id"]
    assert post_webhook(web, "github_issues_labeled", node)["outcome"] == "opened"
    assert passes(make(), clock) == [0, 0]  # not opened again, and still labelled: not stopped
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert status(db, run_of(db, node))["trigger_label_id"] == WEBHOOK_LABEL_ID


# --- following ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"state": "closed", "state_reason": "not_planned"}, "issue canceled"),
        ({"state": "closed", "state_reason": "completed"}, "issue completed"),
        ({"labels": ("bug",)}, "trigger label removed"),
        (None, "issue deleted"),
    ],
    ids=["closed-not-planned", "closed-completed", "unlabelled", "deleted"],
)
def test_a_run_whose_issue_ended_is_stopped_exactly_once(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    change: dict[str, Any] | None,
    reason: str,
) -> None:
    fake = github[0]
    node = fake.put_issue(REPO, 42)["node_id"]
    loop = make()
    assert loop.reconcile_once() == 1
    run_id = run_of(db, node)
    if change is None:
        fake.gone_issues.add(f"{REPO}#42")
    else:
        fake.put_issue(REPO, 42, **change)
    clock.advance(INTERVAL_S)
    assert passes(loop, clock) == [1, 0]
    assert make().reconcile_once() == 0  # another worker's reconciler
    assert status(db, run_id)["status"] == "stopped"
    assert stops(db, run_id) == [("reconciler", reason)]
    assert fake.issue_reads("/issues/42") == 2  # read while active (two passes), then no longer
    key = f"reconcile:stop:{run_id}"
    assert sql(f"SELECT count(*) FROM webhook_deliveries WHERE delivery_key = '{key}'") == 1


def test_a_run_a_webhooks_label_started_stops_when_the_label_goes(
    db: database.Database,
    clock: Clock,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    web: TestClient,
) -> None:
    fake = github[0]
    node = fake.put_issue(REPO, 42)["node_id"]
    run_id = post_webhook(web, "github_issues_labeled", node)["run_id"]
    fake.put_issue(REPO, 42, labels=("bug",))  # the `unlabeled` delivery was lost
    assert passes(make(), clock) == [1, 0]
    assert stops(db, run_id) == [("reconciler", "trigger label removed")]


def test_a_run_started_by_comment_is_not_stopped_for_lacking_the_label(
    db: database.Database,
    clock: Clock,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    web: TestClient,
) -> None:
    node = github[0].put_issue(REPO, 42, labels=())["node_id"]
    run_id = post_webhook(web, "github_issue_comment_start", node)["run_id"]
    assert status(db, run_id)["trigger"] == "comment"
    assert passes(make(), clock) == [0, 0]
    assert status(db, run_id)["status"] == "intake"


def test_a_closed_issue_spares_a_run_that_has_its_pr_and_a_later_deletion_still_stops_it(
    db: database.Database,
    clock: Clock,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    fake = github[0]
    loop, run_id = a_run_with_its_pr(db, make, fake)
    fake.put_issue(REPO, 42, state="closed", state_reason="completed")  # "Closes #42", say
    clock.advance(INTERVAL_S)
    assert passes(loop, clock) == [0, 0]
    assert status(db, run_id)["status"] == "intake"
    fake.gone_issues.add(f"{REPO}#42")
    assert passes(loop, clock) == [1, 0]
    assert stops(db, run_id) == [("reconciler", "issue deleted")]


def test_an_issue_closed_as_not_planned_stops_even_a_run_that_has_its_pr(
    db: database.Database,
    clock: Clock,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    fake = github[0]
    loop, run_id = a_run_with_its_pr(db, make, fake)
    fake.put_issue(REPO, 42, state="closed", state_reason="not_planned")  # no merge closes that way
    clock.advance(INTERVAL_S)
    assert passes(loop, clock) == [1, 0]
    assert stops(db, run_id) == [("reconciler", "issue canceled")]


def test_a_closed_issue_whose_run_got_its_pr_after_the_pass_read_it_spares_the_run(
    db: database.Database,
    clock: Clock,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    node = github[0].put_issue(REPO, 42)["node_id"]
    assert make().reconcile_once() == 1
    run_id = run_of(db, node)
    read = status(db, run_id)  # the pass's view of the run: no PR yet
    db.transaction_sync(lambda tx: runs.update(tx, run_id, {"pr_number": 7}))  # then the PR comes
    closed = dataclasses.replace(github[1].issue(REPO, 42), state="closed")
    intent = github_issues_reconciler.why_stop(read, closed, "foundry")
    assert intent is not None and (intent.reason, intent.spare_with_pr) == ("issue completed", True)
    delivery = Delivery("github", f"reconcile:stop:{run_id}", "Reconcile.stop", clock())
    result = Intake(db, approvers=(), max_runs_per_day=10).handle_sync(delivery, intent)
    assert result.outcome == "ignored"
    assert status(db, run_id)["status"] == "intake"


def test_an_issue_still_open_and_labelled_leaves_its_run_alone(
    db: database.Database,
    clock: Clock,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    fake = github[0]
    node = fake.put_issue(REPO, 42, labels=("Foundry", "bug"))["node_id"]  # labels match by name, any case
    loop = make()
    assert passes(loop, clock, 3) == [1, 0, 0]
    assert status(db, run_of(db, node))["status"] == "intake"
    assert fake.issue_reads("/issues/42") == 3


# --- failures and timing ------------------------------------------------------------------------


@pytest.mark.parametrize("refusal", [502, 503, 429])
def test_a_retryable_refusal_of_the_listing_ends_the_pass_without_writing(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    refusal: int,
) -> None:
    fake = github[0]
    fake.put_issue(REPO, 42)
    loop = make(repositories=(REPO, "acme/gadgets"))
    fake.issue_errors.append(refusal)
    assert loop.reconcile_once() == 0
    assert fake.issue_reads() == 1  # the pass ended at the first refusal: no other repository read
    assert sql("SELECT count(*) FROM foundry_runs") == 0
    assert sql("SELECT count(*) FROM webhook_deliveries") == 0
    clock.advance(INTERVAL_S)
    assert loop.reconcile_once() == 1  # the next pass catches up
    assert sql("SELECT count(*) FROM foundry_runs") == 1


@pytest.mark.parametrize("refusal", [503, 429, 401, 403], ids=["503", "429", "401", "403"])
def test_a_refused_issue_read_ends_the_pass_and_the_next_one_stops_both(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
    refusal: int,
) -> None:
    """A refusal GitHub may lift, or one of our token: the same for every issue, so the rest wait."""
    fake = github[0]
    nodes = [fake.put_issue(REPO, n)["node_id"] for n in (42, 43)]
    loop = make()
    assert loop.reconcile_once() == 2
    run_ids = [run_of(db, node) for node in nodes]
    for n in (42, 43):
        fake.put_issue(REPO, n, state="closed", state_reason="not_planned")
    clock.advance(INTERVAL_S)
    reads = fake.issue_reads("/issues/")
    fake.issue_errors[:] = [None, refusal]  # the listing answers; the first issue read is refused
    assert loop.reconcile_once() == 0
    assert fake.issue_reads("/issues/") == reads + 1  # the second run's issue was not read
    assert [status(db, r)["status"] for r in run_ids] == ["intake", "intake"]
    assert sql("SELECT count(*) FROM webhook_deliveries") == 2  # the two openings only
    clock.advance(INTERVAL_S)
    assert loop.reconcile_once() == 2
    assert [status(db, r)["status"] for r in run_ids] == ["stopped", "stopped"]


def test_a_refused_repository_listing_leaves_the_other_repositories_reconciled(
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    fake = github[0]
    fake.put_issue("acme/gadgets", 7)
    fake.issue_errors.append(404)  # acme/widgets: gone, or not readable with our token
    assert make(repositories=(REPO, "acme/gadgets")).reconcile_once() == 1
    assert fake.issue_reads("/repos/acme/widgets/issues") == 1
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql("SELECT issue_key FROM foundry_runs") == "acme/gadgets#7"


def test_nothing_happens_before_the_interval(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    make: Callable[..., GitHubIssuesReconciler],
    github: tuple[GitHubFake, GitHubIssuesClient],
) -> None:
    fake = github[0]
    fake.put_issue(REPO, 42)
    loop = make(due=False)
    assert loop.reconcile_once() == 0  # the worker just started
    clock.advance(INTERVAL_S - 1)
    assert loop.reconcile_once() == 0
    assert fake.issue_reads() == 0
    clock.advance(1)
    assert loop.reconcile_once() == 1
    fake.put_issue(REPO, 43)
    clock.advance(INTERVAL_S - 1)
    assert loop.reconcile_once() == 0  # within the interval of the last pass
    assert fake.issue_reads() == 2  # one listing, one read of #42's run
    assert sql("SELECT count(*) FROM foundry_runs") == 1


@pytest.mark.parametrize("without", ["repositories", "client"])
def test_without_repositories_or_a_token_it_does_nothing(
    db: database.Database,
    clock: Clock,
    sql: Sql,
    github: tuple[GitHubFake, GitHubIssuesClient],
    without: str,
) -> None:
    github[0].put_issue(REPO, 42)
    loop = GitHubIssuesReconciler(
        db,
        github=None if without == "client" else github[1],
        intake=Intake(db, approvers=(), max_runs_per_day=10),
        repositories=() if without == "repositories" else (REPO,),
        label="foundry",
        clock=clock,
        interval=timedelta(seconds=INTERVAL_S),
    )
    assert passes(loop, clock, 3) == [0, 0, 0]
    assert github[0].issue_reads() == 0
    assert sql("SELECT count(*) FROM foundry_runs") == 0


@pytest.mark.parametrize("configured", [[], [REPO, "acme/gadgets"]])
def test_the_worker_runs_it_among_the_reconcilers_for_the_configured_repositories(
    db: database.Database,
    make_settings: Callable[..., Settings],
    github: tuple[GitHubFake, GitHubIssuesClient],
    configured: list[str],
) -> None:
    settings = make_settings(github={"issue_repositories": configured})
    loops = wiring.reconcilers(settings, db, None, github[1])
    found = [getattr(loop, "__self__", None) for loop in loops]
    [built] = [loop for loop in found if isinstance(loop, GitHubIssuesReconciler)]
    assert built._repositories == tuple(configured)
