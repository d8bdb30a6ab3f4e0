"""An environment whose OpenTelemetry protos were overwritten by xds-protos' older copy says so in one line."""

from __future__ import annotations

import sys
import types

import pytest

from rollwise.telemetry.decode import protos_problem


def test_good_protos_are_no_problem() -> None:
    protos_problem.cache_clear()
    assert protos_problem() is None


def test_an_older_copy_is_named_with_the_command_that_repairs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    older = types.ModuleType("opentelemetry.proto.common.v1.common_pb2")  # no InstrumentationScope, as in xds-protos
    monkeypatch.setitem(sys.modules, "opentelemetry.proto.common.v1.common_pb2", older)
    protos_problem.cache_clear()
    try:
        problem = protos_problem()
    finally:
        protos_problem.cache_clear()
    assert problem is not None and "\n" not in problem
    assert "xds-protos" in problem and "pip install --force-reinstall --no-deps 'opentelemetry-proto==" in problem
