"""A job becomes one commit per attempt on the run's branch and one pull request per run,
however often it is delivered."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.runner.kit import AGENT_TOKEN, DEADLINE_S, GITHUB_TOKEN, Kit, files_holding, git, lines, send
from tests.servers import wait_until


def test_a_job_becomes_one_branch_one_commit_and_one_pull_request(kit: Kit) -> None:
    job = kit.job()
    run_id, branch = job["run_id"], job["branch"]
    with kit.runner() as served:
        answer = send(served.jobs_url, job)
        assert answer.status_code == 202, answer.text
        wait_until(lambda: "pr_opened" in kit.foundry.kinds(run_id), deadline_s=DEADLINE_S, what="pr_opened")
        wait_until(lambda: served.state(run_id) == "done", deadline_s=DEADLINE_S, what="the job done")

    commits = kit.branch_log(branch)
    assert len(commits) == 1
    assert commits[0].splitlines()[0] == "ENG-42: Persist saved filters"
    assert f"Foundry-Run: {run_id}" in commits[0] and "Foundry-Attempt: 1" in commits[0]
    assert kit.remote_file(branch, "changes.txt") == "attempt 1\n"
    assert _author(kit, branch) == "Foundry <foundry@users.noreply.github.com>"

    [created] = kit.github.creates()
    assert created["head"] == branch and created["base"] == "main"
    assert created["title"] == "ENG-42: Persist saved filters"
    assert f"Foundry-Run: {run_id}" in created["body"]
    assert "https://linear.app/acme/issue/ENG-42" in created["body"]

    assert kit.foundry.kinds(run_id) == ["started", "progress", "pr_opened"]
    [opened] = kit.foundry.of_kind(run_id, "pr_opened")
    assert opened["pr_number"] == 1 and opened["pr_url"].endswith("/acme/app/pull/1")
    assert all(key.startswith(f"runner:{run_id}:1:") for key in kit.foundry.keys(run_id))
    assert not (kit.root / "work" / "worktrees" / run_id).exists()  # pushed: its worktree is removed


def test_no_token_is_written_anywhere_in_the_workdir(kit: Kit) -> None:
    job = kit.job()
    with kit.runner() as served:
        send(served.jobs_url, job)
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="the job done")
    assert files_holding(kit.root / "work", AGENT_TOKEN, GITHUB_TOKEN) == []


def test_the_same_job_twice_runs_the_command_once_and_opens_one_pull_request(kit: Kit) -> None:
    runs = kit.root / "runs.log"
    job = kit.job(script={"runs": str(runs)})
    with kit.runner() as served:
        assert send(served.jobs_url, job).status_code == 202
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="the job done")
        again = send(served.jobs_url, job)
        assert again.status_code == 200
        assert again.json()["duplicate"] is True and again.json()["state"] == "done"
    assert lines(runs) == ["attempt 1"]
    assert len(kit.github.creates()) == 1
    assert kit.foundry.kinds(job["run_id"]).count("pr_opened") == 1


def test_the_same_job_delivered_concurrently_is_one_piece_of_work(kit: Kit) -> None:
    runs = kit.root / "runs.log"
    job = kit.job(script={"runs": str(runs)})
    senders = 8
    barrier = threading.Barrier(senders)
    with kit.runner() as served:

        def deliver() -> int:
            barrier.wait(timeout=DEADLINE_S)
            return send(served.jobs_url, job).status_code

        with ThreadPoolExecutor(senders) as pool:
            codes = list(pool.map(lambda _: deliver(), range(senders)))
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="the job done")
        assert served.runner.store.job(f"{job['run_id']}:1")["runs"] == 1  # type: ignore[index]
    assert sorted(codes) == [200] * (senders - 1) + [202]
    assert lines(runs) == ["attempt 1"]
    assert len(kit.github.creates()) == 1
    assert len(kit.branch_log(job["branch"])) == 1


def test_attempt_two_adds_a_commit_to_the_same_branch_and_finds_the_same_pull_request(kit: Kit) -> None:
    first = kit.job()
    run_id, branch = first["run_id"], first["branch"]
    second = kit.job(
        run_id=run_id,
        attempt=2,
        context={"reason": "ci_failed", "head_sha": "abc123", "failing_checks": [{"name": "test"}]},
    )
    with kit.runner() as served:
        send(served.jobs_url, first)
        wait_until(lambda: served.state(run_id, 1) == "done", deadline_s=DEADLINE_S, what="attempt 1")
        send(served.jobs_url, second)
        wait_until(lambda: served.state(run_id, 2) == "done", deadline_s=DEADLINE_S, what="attempt 2")
        wait_until(
            lambda: len(kit.foundry.of_kind(run_id, "pr_opened")) == 2, deadline_s=DEADLINE_S, what="reports"
        )

    commits = kit.branch_log(branch)
    assert len(commits) == 2
    assert "Foundry-Attempt: 1" in commits[0] and "Foundry-Attempt: 2" in commits[1]
    assert "Attempt 2: ci_failed." in commits[1]
    assert kit.remote_file(branch, "changes.txt") == "attempt 1\nattempt 2\n"
    assert len(kit.github.creates()) == 1
    assert len(kit.github.open_for(branch)) == 1
    assert [r["pr_number"] for r in kit.foundry.of_kind(run_id, "pr_opened")] == [1, 1]


def test_attempt_two_on_another_machine_builds_on_the_pushed_branch(kit: Kit) -> None:
    """A fresh workdir (a CI runner) fetches the run's branch instead of starting it over."""
    first = kit.job()
    run_id, branch = first["run_id"], first["branch"]
    with kit.runner(kit.root / "machine-a") as served:
        send(served.jobs_url, first)
        wait_until(lambda: served.state(run_id, 1) == "done", deadline_s=DEADLINE_S, what="attempt 1")
    with kit.runner(kit.root / "machine-b") as served:
        send(served.jobs_url, kit.job(run_id=run_id, attempt=2, context={"reason": "changes_requested"}))
        wait_until(lambda: served.state(run_id, 2) == "done", deadline_s=DEADLINE_S, what="attempt 2")
    assert len(kit.branch_log(branch)) == 2
    assert kit.remote_file(branch, "changes.txt") == "attempt 1\nattempt 2\n"
    assert len(kit.github.creates()) == 1


def test_commits_the_command_made_itself_become_the_attempts_one_commit(kit: Kit) -> None:
    job = kit.job(script={"commit": True})
    with kit.runner() as served:
        send(served.jobs_url, job)
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="the job done")
    [commit] = kit.branch_log(job["branch"])
    assert commit.startswith("ENG-42: Persist saved filters")
    assert _author(kit, job["branch"]) == "Foundry <foundry@users.noreply.github.com>"


def test_a_command_that_changes_nothing_is_reported_failed_and_opens_no_pull_request(kit: Kit) -> None:
    job = kit.job(script={"noop": True})
    with kit.runner() as served:
        send(served.jobs_url, job)
        wait_until(lambda: "failed" in kit.foundry.kinds(job["run_id"]), deadline_s=DEADLINE_S, what="failed")
        wait_until(lambda: served.state(job["run_id"]) == "failed", deadline_s=DEADLINE_S, what="job failed")
    [failed] = kit.foundry.of_kind(job["run_id"], "failed")
    assert failed["reason"] == "the command changed nothing"
    assert kit.github.creates() == []
    assert not kit.remote_has(job["branch"])


def test_a_failing_command_is_reported_with_its_status_and_its_output_scrubbed(kit: Kit) -> None:
    job = kit.job(script={"fail": 3, "say": f"leaking {AGENT_TOKEN} and {GITHUB_TOKEN}"})
    with kit.runner() as served:
        send(served.jobs_url, job)
        wait_until(lambda: "failed" in kit.foundry.kinds(job["run_id"]), deadline_s=DEADLINE_S, what="failed")
    [failed] = kit.foundry.of_kind(job["run_id"], "failed")
    assert failed["reason"] == "the command exited with status 3"
    assert "the script fails on purpose" in failed["message"]
    assert "[redacted]" in failed["message"]
    assert AGENT_TOKEN not in str(failed) and GITHUB_TOKEN not in str(failed)
    assert kit.github.creates() == []


def test_a_change_to_a_forbidden_path_is_not_pushed(kit: Kit) -> None:
    job = kit.job(constraints={"forbidden_globs": ["changes.txt"], "max_files_changed": 50})
    with kit.runner() as served:
        send(served.jobs_url, job)
        wait_until(lambda: "failed" in kit.foundry.kinds(job["run_id"]), deadline_s=DEADLINE_S, what="failed")
    [failed] = kit.foundry.of_kind(job["run_id"], "failed")
    assert failed["reason"] == "the command changed forbidden paths: changes.txt"
    assert not kit.remote_has(job["branch"])
    assert kit.github.creates() == []


def test_the_cost_the_command_writes_is_reported(kit: Kit) -> None:
    job = kit.job(script={"cost": 0.42})
    with kit.runner() as served:
        send(served.jobs_url, job)
        wait_until(lambda: "pr_opened" in kit.foundry.kinds(job["run_id"]), deadline_s=DEADLINE_S, what="PR")
    assert [r["usd"] for r in kit.foundry.of_kind(job["run_id"], "cost")] == [0.42]


def test_an_open_pull_request_for_the_branch_is_reused_not_duplicated(kit: Kit) -> None:
    """A PR opened by an earlier try (whose report was lost with its runner) is found first."""
    job = kit.job()
    with kit.runner(kit.root / "first") as served:
        send(served.jobs_url, job)
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="first")
    with kit.runner(kit.root / "second") as served:
        send(served.jobs_url, job)  # the same attempt on a machine that never saw it
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="second")
    assert len(kit.github.creates()) == 1
    assert len(kit.branch_log(job["branch"])) == 1  # its commit was recognised, not made again


def _author(kit: Kit, branch: str) -> str:
    return git("--git-dir", str(kit.remote), "log", "-1", "--format=%an <%ae>", branch, cwd=kit.root).strip()
