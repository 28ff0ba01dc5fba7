"""Foundry: Linear issues in, reviewed pull requests out, every effect exactly once."""

__version__ = "0.1.0"
