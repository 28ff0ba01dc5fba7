"""Small real servers that stand in for Linear, Slack and a model API, recording what they got.

Worker processes cannot be reached by respx, so tests that run `foundry worker` point it at
these over HTTP on 127.0.0.1. Linear refuses a second comment with the same id, like Linear.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PLAN = {"summary": "Persist filters in the store", "steps": ["Add a table", "Test it"], "paths": []}


class Providers:
    def __init__(self, *, hold_first_model_call: bool = False) -> None:
        self.lock = threading.Lock()
        self.comments: Counter[str] = Counter()  # comment id -> create attempts that succeeded
        self.comment_bodies: dict[str, str] = {}
        self.slack_posts: list[dict[str, Any]] = []
        self.slack_updates: list[dict[str, Any]] = []
        self.model_calls = 0
        self.model_called = threading.Event()
        self.release_model = threading.Event()
        if not hold_first_model_call:
            self.release_model.set()
        self.app = Starlette(
            routes=[
                Route("/linear/graphql", self._linear, methods=["POST"]),
                Route("/slack/chat.postMessage", self._slack_post, methods=["POST"]),
                Route("/slack/chat.update", self._slack_update, methods=["POST"]),
                Route("/slack/conversations.history", self._slack_history, methods=["GET"]),
                Route("/model/v1/messages", self._model, methods=["POST"]),
            ]
        )

    async def _linear(self, request: Request) -> JSONResponse:
        body = await request.json()
        variables, query = body["variables"], body["query"]
        if "commentCreate" not in query:  # answered by operation, as Linear does
            return self._linear_read(query)
        with self.lock:
            if variables["id"] in self.comments:
                return JSONResponse(
                    {"errors": [{"message": "Entity already exists", "extensions": {"code": "CONFLICT"}}]}
                )
            self.comments[variables["id"]] += 1
            self.comment_bodies[variables["id"]] = variables["body"]
        return JSONResponse(
            {"data": {"commentCreate": {"success": True, "comment": {"id": variables["id"]}}}}
        )

    @staticmethod
    def _linear_read(query: str) -> JSONResponse:
        if "attachmentCreate" in query:
            return JSONResponse({"data": {"attachmentCreate": {"success": True}}})
        if "query Labelled" in query:
            return JSONResponse({"data": {"issues": {"nodes": [], "pageInfo": {"hasNextPage": False}}}})
        # Anything else (an issue's state) is not served: an error the caller retries later,
        # never a "not found" that would stop a run.
        return JSONResponse({"errors": [{"message": "this fake does not serve that query"}]}, status_code=503)

    async def _slack_post(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self.lock:
            self.slack_posts.append(body)
            ts = f"1795689000.{len(self.slack_posts):06d}"
        return JSONResponse({"ok": True, "channel": body["channel"], "ts": ts})

    async def _slack_update(self, request: Request) -> JSONResponse:
        with self.lock:
            self.slack_updates.append(await request.json())
        return JSONResponse({"ok": True})

    async def _slack_history(self, request: Request) -> JSONResponse:
        with self.lock:
            messages = [
                {"ts": f"1795689000.{n + 1:06d}", "metadata": post.get("metadata")}
                for n, post in enumerate(self.slack_posts)
            ]
        return JSONResponse({"ok": True, "messages": messages})

    async def _model(self, request: Request) -> JSONResponse:
        with self.lock:
            self.model_calls += 1
        self.model_called.set()
        # The first call can be held, so a test can kill the worker in the middle of planning.
        await anyio.to_thread.run_sync(self.release_model.wait, 30)
        return JSONResponse({"content": [{"type": "text", "text": json.dumps(PLAN)}]})
