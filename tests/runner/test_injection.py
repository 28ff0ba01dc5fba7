"""Issue text is data: quotes, `$(…)`, backticks and newlines reach the command intact, in files,
and nothing in them is ever run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.runner.kit import AGENT_TOKEN, COMMAND, DEADLINE_S, GITHUB_TOKEN, SCRIPT, Kit, send
from tests.servers import wait_until


def hostile(marker: Path) -> tuple[str, str]:
    """A title and a description that would each create a file under `marker` if any shell saw them."""
    title = (
        f"It's \"broken\" $(touch {marker}-title-1) `touch {marker}-title-2` '; touch {marker}-title-3; '"
        f"\nsecond line && touch {marker}-title-4"
    )
    description = (
        f'Steps:\n1. $(touch {marker}-desc-1)\n2. `touch {marker}-desc-2`\n3. "; touch {marker}-desc-3; "\n'
        f"4. ' || touch {marker}-desc-4 || '\n${{IFS}}touch${{IFS}}{marker}-desc-5\n"
        f'\\"$(id)\\" \x1b[31mred\x1b[0m'
    )
    return title, description


def test_hostile_issue_text_reaches_the_command_intact_and_runs_nothing(kit: Kit) -> None:
    marker = kit.root / "pwned"
    title, description = hostile(marker)
    copies = kit.root / "seen"
    job = kit.job(script={"copy_to": str(copies)})
    job["issue"] |= {"title": title, "description": description}
    job["plan"]["summary"] = f"$(touch {marker}-plan) `touch {marker}-plan-2`"
    job["prompts"] = [{"from": "lee", "prompt": f"'; touch {marker}-prompt; '"}]
    job["context"] = {"reason": "changes_requested", "details": f"$(touch {marker}-context)"}
    raw = json.dumps(job).encode()
    with kit.runner() as served:
        assert send(served.jobs_url, raw).status_code == 202
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="the job done")

    assert sorted(p.name for p in kit.root.iterdir() if p.name.startswith("pwned")) == []
    assert (copies / "job.json").read_bytes() == raw  # the very bytes Foundry signed
    prompt = (copies / "prompt.txt").read_text()
    assert title in prompt and description in prompt and f"'; touch {marker}-prompt; '" in prompt
    assert (copies / "stdin.txt").read_text() == prompt
    [created] = kit.github.creates()
    assert created["title"] == ("ENG-42: " + " ".join(title.split()))[:256]
    [commit] = kit.branch_log(job["branch"])
    assert commit.splitlines()[0] == "ENG-42: " + " ".join(title.split())[:72]


def test_placeholders_are_whole_arguments_and_the_command_never_sees_the_runners_tokens(kit: Kit) -> None:
    copies = kit.root / "seen"
    job = kit.job(script={"copy_to": str(copies)})
    command = [*COMMAND, "{prompt_file}", "{job_file}", "--message-file={prompt_file}", "{cost_file}x"]
    with kit.runner(command=command) as served:
        send(served.jobs_url, job)
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="the job done")
    files = kit.root / "work" / "jobs" / job["run_id"] / "1"
    argv = json.loads((copies / "argv.json").read_text())
    assert argv == [
        str(files / "prompt.txt"),
        str(files / "job.json"),
        "--message-file={prompt_file}",
        "{cost_file}x",
    ]
    env = json.loads((copies / "env.json").read_text())
    assert env["FOUNDRY_JOB_FILE"] == str(files / "job.json")
    assert env["FOUNDRY_PROMPT_FILE"] == str(files / "prompt.txt")
    assert AGENT_TOKEN not in json.dumps(env) and GITHUB_TOKEN not in json.dumps(env)
    assert not any(name.startswith("FOUNDRY_") and "TOKEN" in name for name in env)


def test_a_command_string_is_split_into_argv_and_not_run_by_a_shell(kit: Kit) -> None:
    marker = kit.root / "shell-ran"
    copies = kit.root / "seen"
    job = kit.job(script={"copy_to": str(copies)})
    command = f"{sys.executable} {SCRIPT} 'two words' ; touch {marker} $(touch {marker}-2)"
    with kit.runner(command=command) as served:
        send(served.jobs_url, job)
        wait_until(lambda: served.state(job["run_id"]) == "done", deadline_s=DEADLINE_S, what="the job done")
    assert json.loads((copies / "argv.json").read_text()) == [
        "two words",
        ";",
        "touch",
        str(marker),
        "$(touch",
        f"{marker}-2)",
    ]
    assert not marker.exists() and not Path(f"{marker}-2").exists()
    assert os.path.exists(copies / "job.json")
