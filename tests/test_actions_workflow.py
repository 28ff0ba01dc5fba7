"""The GitHub Actions runner workflow: no workflow input ever reaches a shell, and its one run
step is `foundry runner once` on the job file — a command the CLI accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import servers

WORKFLOW = Path(__file__).resolve().parents[1] / "runners" / "github-actions" / "foundry.yml"
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_no_run_step_expands_an_expression(workflow: dict[Any, Any]) -> None:
    runs = [step["run"] for step in steps(workflow) if "run" in step]
    assert runs, "the workflow has run steps"
    for script in runs:
        assert EXPRESSION.search(script) is None, script


def test_inputs_reach_steps_only_through_the_environment(workflow: dict[Any, Any]) -> None:
    for step in steps(workflow):
        for value in (step.get("env") or {}).values():
            for expression in EXPRESSION.findall(str(value)):
                assert re.fullmatch(
                    r"\s*(inputs\.job|secrets\.\w+|vars\.\w+|github\.token)[\w\s.|'-]*", expression
                )


def test_it_is_dispatched_with_the_inputs_foundry_sends(workflow: dict[Any, Any]) -> None:
    # YAML reads the bare key `on` as True.
    dispatch = (workflow.get("on") or workflow[True])["workflow_dispatch"]
    assert set(dispatch["inputs"]) == {"run_id", "attempt", "branch", "callback_url", "job"}
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_its_runner_step_is_a_command_the_cli_accepts(workflow: dict[Any, Any]) -> None:
    [step] = [step for step in steps(workflow) if "foundry runner once" in step.get("run", "")]
    words = shlex.split(step["run"])  # the --command value stays one word
    assert words[:3] == ["foundry", "runner", "once"] and "--job-file" in words
    answer = subprocess.run(
        servers.foundry_command("runner", "once", "--help"),
        env=servers.foundry_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    for flag in (word for word in words if word.startswith("--")):
        assert flag in answer.stdout, flag
