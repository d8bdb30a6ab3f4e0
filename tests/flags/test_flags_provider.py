"""RollwiseProvider: typed resolution, reload on file change with PROVIDER_CONFIGURATION_CHANGED,
and an invalid file leaving the served flags untouched."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode

from rollwise.flags import RollwiseProvider

DOC: dict[str, Any] = {
    "flags": {
        "greeting": {"state": "ENABLED", "variants": {"hi": "hi", "yo": "yo"}, "defaultVariant": "hi"},
        "limit": {"state": "ENABLED", "variants": {"low": 1, "high": 5}, "defaultVariant": "high"},
    }
}


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(30)
def test_provider_reloads_on_change_and_ignores_invalid_files(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(DOC))
    provider = RollwiseProvider(path, poll_interval=0.05)
    domain = f"provider-{uuid.uuid4().hex}"
    api.set_provider_and_wait(provider, domain)
    client = api.get_client(domain)
    changes: list[EventDetails] = []
    changed = threading.Event()

    def on_change(details: EventDetails) -> None:
        changes.append(details)
        changed.set()

    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        assert client.get_string_value("greeting", "x", EvaluationContext()) == "hi"
        assert client.get_integer_value("limit", 0) == 5
        assert client.get_float_value("limit", 0.0) == 5.0  # integers satisfy a float request
        mismatch = client.get_integer_details("greeting", 7)
        assert mismatch.value == 7 and mismatch.error_code == ErrorCode.TYPE_MISMATCH

        doc = json.loads(json.dumps(DOC))
        doc["flags"]["greeting"]["defaultVariant"] = "yo"
        tmp = tmp_path / "next.json"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)  # how editors and the CLI swap files
        assert changed.wait(5)
        assert changes[0].flags_changed == ["greeting"]
        assert client.get_string_value("greeting", "x") == "yo"

        path.write_text(
            '{"flags": {"greeting": {"state": "ENABLED", "variants": {"hi": "hi"}, "defaultVariant": "nope"}}}'
        )
        assert _wait(lambda: provider.repository.last_error is not None)
        assert client.get_string_value("greeting", "x") == "yo"  # still the last valid configuration
        assert len(changes) == 1
    finally:
        provider.shutdown()
