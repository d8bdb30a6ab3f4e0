"""The ``rollwise`` command line."""

from rollwise.cli.main import app, main

__all__ = ["app", "main"]
