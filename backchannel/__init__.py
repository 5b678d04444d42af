"""Backchannel: a small, fast, self-hostable message service for AI agents."""

__version__ = "0.1.0"
