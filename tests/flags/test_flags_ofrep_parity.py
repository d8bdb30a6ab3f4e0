"""The PyPI OFREP client pointed at the rollwise flag service must see, for every flag of every testbed
flag file, the same value, variant, reason and error code as the in-process RollwiseProvider."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

from rollwise.flags import FlagRepository, RollwiseProvider
from rollwise.flags.service import create_flags_router
from support.flags_bdd import TESTBED
from support.flags_server import serve
from support.serve_process import rollwise_serve

FLAG_FILES = sorted(p.name for p in (TESTBED / "flags").glob("*.json"))

CONTEXTS = [
    EvaluationContext(),
    EvaluationContext("user-1"),
    EvaluationContext("5c3d8535-f81a-4478-a6d3-afaa4d51199e", {"email": "ballmer@macrosoft.com"}),
    EvaluationContext("jon@company.com", {"email": "jobs@orange.com", "tier": "premium", "color": "red"}),
    EvaluationContext(None, {"user": {"name": "jack"}, "version": "2.1.0", "id": "abcxyz", "time": 1}),
    EvaluationContext("someone", {"version": "not-a-version", "num": 123, "hashing_input": {"a": [1, 2.5]}}),
    EvaluationContext(
        None, {"fn": "Sulisław", "ln": "Świętopełk", "age": 29, "customer": False, "injectedmetadata": "set"}
    ),
]

_GETTERS = {
    "boolean": ("get_boolean_details", False),
    "string": ("get_string_details", "code-default"),
    "integer": ("get_integer_details", -7),
    "float": ("get_float_details", -0.5),
    "object": ("get_object_details", {"code": "default"}),
}


def _client(provider: Any) -> OpenFeatureClient:
    domain = f"parity-{uuid.uuid4().hex}"
    api.set_provider_and_wait(provider, domain)
    return api.get_client(domain)


@pytest.fixture(scope="module")
def ofrep_server() -> Any:
    """One server with every testbed file mounted under its own prefix."""
    app = FastAPI()
    repos = []
    for name in FLAG_FILES:
        repo = FlagRepository(TESTBED / "flags" / name, apply_schedules=False)
        repos.append(repo)
        app.include_router(create_flags_router(repo), prefix=f"/{Path(name).stem}")
    with serve(app) as base_url:
        yield base_url


def _shape(details: Any) -> tuple[Any, ...]:
    reason = getattr(details.reason, "value", details.reason)
    code = details.error_code.value if details.error_code is not None else None
    return (details.value, details.variant, reason, code)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flag_file", FLAG_FILES)
def test_ofrep_client_matches_in_process_provider(ofrep_server: str, flag_file: str) -> None:
    path = TESTBED / "flags" / flag_file
    _compare(path, f"{ofrep_server}/{path.stem}/")


@pytest.mark.timeout(300)
def test_rollwise_serve_process_answers_like_the_in_process_provider(tmp_path: Path) -> None:
    """The same comparison against the real ``rollwise serve --flags FILE`` command, one process per file."""
    for flag_file in FLAG_FILES:
        path = TESTBED / "flags" / flag_file
        workdir = tmp_path / path.stem
        store = f"sqlite:///{workdir / 'serve.db'}"
        args = ("--flags", str(path), "--no-controller", "--log-level", "warning")
        with rollwise_serve(store, workdir, *args) as served:
            _compare(path, f"{served.url}/")



def _compare(path: Path, base_url: str) -> None:
    flag_file = path.name
    in_process = RollwiseProvider(path, watch=False)
    remote = OFREPProvider(base_url, timeout=5)
    local_client, remote_client = _client(in_process), _client(remote)
    compared = 0
    try:
        for key, flag in in_process.repository.flag_set.flags.items():
            method, default = _GETTERS[flag.kind]
            for ctx in CONTEXTS:
                local = _shape(getattr(local_client, method)(key, default, ctx))
                remote_result = _shape(getattr(remote_client, method)(key, default, ctx))
                assert remote_result == local, f"{flag_file}:{key} ctx={ctx}: ofrep {remote_result} != {local}"
                compared += 1
        # A flag that does not exist is FLAG_NOT_FOUND on both paths.
        missing = ("no-such-flag", "x", EvaluationContext())
        assert _shape(remote_client.get_string_details(*missing)) == _shape(local_client.get_string_details(*missing))
    finally:
        in_process.shutdown()
    assert compared >= len(in_process.repository.flag_set) * len(CONTEXTS)
