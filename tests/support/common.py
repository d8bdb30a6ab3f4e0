"""Small helpers shared by test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def require_or_skip(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("ROLLWISE_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)



def broken_canary(text: str) -> str:
    """examples/canary.yaml with three mistakes: an unknown step type, setWeight 150, '30 parsecs'."""
    text = text.replace("- setWeight: 25", "- setWeight: 150", 1)
    text = text.replace("- setWeight: 10\n", "- setWieght: 10\n", 1)
    return text.replace("- pause: {duration: 2m}\n      - setWeight: 50",
                        "- pause: {duration: 30 parsecs}\n      - setWeight: 50", 1)
