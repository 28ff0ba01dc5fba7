"""Every GraphQL document Foundry sends to Linear is valid against Linear's schema — and so are the
variables it sends with it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
import respx
from graphql.execution.values import get_variable_values

from foundry.clients import linear as linear_client
from foundry.clients.linear import LinearClient

SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "providers" / "linear.graphql"
URL = "https://linear.test/graphql"


@cache
def schema() -> graphql.GraphQLSchema:
    if not SCHEMA.exists():
        reason = f"Linear's schema is not at {SCHEMA}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return graphql.build_schema(SCHEMA.read_text())


def documents() -> list[str]:
    """Every module-level string of the client that is a GraphQL operation."""
    return [
        value
        for value in vars(linear_client).values()
        if isinstance(value, str) and value.lstrip().startswith(("query ", "mutation ", "subscription "))
    ]


def test_the_client_lists_every_document_it_defines() -> None:
    assert sorted(documents()) == sorted(linear_client.DOCUMENTS)


@pytest.mark.parametrize("document", linear_client.DOCUMENTS, ids=lambda d: d.split("(")[0])
def test_each_document_validates_against_linears_schema(document: str) -> None:
    errors = graphql.validate(schema(), graphql.parse(document))
    assert errors == [], [e.message for e in errors]


def answer(request: httpx.Request) -> httpx.Response:
    query = json.loads(request.content)["query"]
    if query.startswith("mutation CreateComment"):
        return httpx.Response(
            200, json={"data": {"commentCreate": {"success": True, "comment": {"id": "c"}}}}
        )
    if query.startswith("mutation Attach"):
        return httpx.Response(200, json={"data": {"attachmentCreate": {"success": True}}})
    if query.startswith("query Labelled"):
        return httpx.Response(
            200, json={"data": {"issues": {"nodes": [], "pageInfo": {"hasNextPage": False}}}}
        )
    issue = {"id": "i", "identifier": "ENG-1", "state": {"type": "started"}, "labels": {"nodes": []}}
    return httpx.Response(200, json={"data": {"issue": issue}})


def test_what_every_method_sends_validates_with_its_variables() -> None:
    client = LinearClient("lin_api_test", base_url=URL)
    with respx.mock(assert_all_mocked=True) as api:
        route = api.post(URL).mock(side_effect=answer)
        client.create_comment(comment_id="6f1c2b0e-5d1a-5b7e-9c3d-2a4f6e8b0c1d", issue_id="i", body="Plan")
        client.attach(issue_id="i", url="https://github.com/acme/web/pull/1", title="PR #1")
        client.issues_with_label("foundry")
        client.issue("i")
        client.issue_state("i")
        client.issue_state("i", comments_since=datetime(2026, 11, 23, 12, tzinfo=UTC))
    client.close()
    sent = [json.loads(call.request.content) for call in route.calls]
    assert {body["query"] for body in sent} == set(linear_client.DOCUMENTS)
    for body in sent:
        check(body["query"], body["variables"])


def check(query: str, variables: dict[str, Any]) -> None:
    document = graphql.parse(query)
    assert graphql.validate(schema(), document) == []
    [operation] = [d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode)]
    coerced = get_variable_values(schema(), operation.variable_definitions or (), variables)
    assert not isinstance(coerced, list), [e.message for e in coerced]
