"""Outbound HTTP: the only package that imports httpx (Linear, Slack, model APIs, agents)."""
