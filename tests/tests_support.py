"""Small helpers shared by test modules."""

from __future__ import annotations


def broken_canary(text: str) -> str:
    """examples/canary.yaml with three mistakes: an unknown step type, setWeight 150, '30 parsecs'."""
    text = text.replace("- setWeight: 25", "- setWeight: 150", 1)
    text = text.replace("- setWeight: 10\n", "- setWieght: 10\n", 1)
    return text.replace("- pause: {duration: 2m}\n      - setWeight: 50",
                        "- pause: {duration: 30 parsecs}\n      - setWeight: 50", 1)
