"""A cancel ends the command's whole process group and says nothing more; a command past its
time is killed and reported failed."""

from __future__ import annotations

import os

import pytest

from tests.runner.kit import DEADLINE_S, Kit, cancel, lines, send
from tests.servers import wait_until


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_cancel_kills_the_running_commands_process_group_and_opens_no_pull_request(kit: Kit) -> None:
    pids = kit.root / "pids"
    job = kit.job(script={"pids": str(pids), "wait_for": str(kit.root / "never")})
    run_id = job["run_id"]
    with kit.runner() as served:
        send(served.jobs_url, job)
        wait_until(lambda: len(lines(pids)) == 1, deadline_s=DEADLINE_S, what="the command to start")
        wait_until(lambda: "started" in kit.foundry.kinds(run_id), deadline_s=DEADLINE_S, what="started")
        pgid = int(lines(pids)[0])
        assert not _gone(pgid)

        answer = cancel(served.jobs_url, run_id)
        assert answer.status_code == 200 and answer.json()["was"] == "running"
        wait_until(lambda: _gone(pgid), deadline_s=DEADLINE_S, what="the process group to be gone")
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
        assert served.state(run_id) == "cancelled"
        assert cancel(served.jobs_url, run_id).status_code == 200  # a second cancel changes nothing
        assert send(served.jobs_url, job).json()["state"] == "cancelled"  # nor does the job again
    assert kit.github.creates() == []
    assert not kit.remote_has(job["branch"])
    assert kit.foundry.kinds(run_id) == ["started"]


def test_a_cancel_before_its_job_means_the_job_never_runs(kit: Kit) -> None:
    runs = kit.root / "runs.log"
    job = kit.job(script={"runs": str(runs)})
    with kit.runner() as served:
        assert cancel(served.jobs_url, job["run_id"]).json()["was"] is None
        answer = send(served.jobs_url, job)
        assert answer.status_code == 200 and answer.json()["state"] == "cancelled"
        # A later job proves the pool is idle, not merely slow to pick this one up.
        later = kit.job()
        send(served.jobs_url, later)
        wait_until(
            lambda: served.state(later["run_id"]) == "done", deadline_s=DEADLINE_S, what="the later job"
        )
    assert lines(runs) == []
    assert kit.foundry.kinds(job["run_id"]) == []


def test_a_cancelled_queued_job_never_runs(kit: Kit) -> None:
    release = kit.root / "release"
    runs = kit.root / "runs.log"
    blocking = kit.job(script={"wait_for": str(release), "runs": str(runs)})
    queued = kit.job(script={"runs": str(runs)})
    with kit.runner(max_jobs=1) as served:
        send(served.jobs_url, blocking)
        wait_until(
            lambda: served.state(blocking["run_id"]) == "running", deadline_s=DEADLINE_S, what="running"
        )
        send(served.jobs_url, queued)
        assert cancel(served.jobs_url, queued["run_id"]).json()["was"] == "queued"
        release.touch()
        wait_until(
            lambda: served.state(blocking["run_id"]) == "done", deadline_s=DEADLINE_S, what="first done"
        )
        assert served.state(queued["run_id"]) == "cancelled"
    assert lines(runs) == ["attempt 1"]  # the blocking job's only


def test_a_command_past_its_timeout_is_killed_and_reported_failed(kit: Kit) -> None:
    pids = kit.root / "pids"
    job = kit.job(script={"pids": str(pids), "wait_for": str(kit.root / "never")})
    with kit.runner(timeout_s=0.5) as served:
        send(served.jobs_url, job)
        wait_until(lambda: "failed" in kit.foundry.kinds(job["run_id"]), deadline_s=DEADLINE_S, what="failed")
        wait_until(lambda: served.state(job["run_id"]) == "failed", deadline_s=DEADLINE_S, what="job failed")
    [failed] = kit.foundry.of_kind(job["run_id"], "failed")
    assert failed["reason"] == "the command timed out after 0.5 s and was killed"
    wait_until(lambda: _gone(int(lines(pids)[0])), deadline_s=DEADLINE_S, what="the group to be gone")
    assert kit.github.creates() == []
