"""An agent memory folder in a spec from the API must be inside an ``--allow-path`` folder."""

from __future__ import annotations

from pathlib import Path

from rollwise.api.policy import SpecPolicy
from rollwise.spec import load_spec_text


def _spec(uri: Path) -> str:
    return f"""
name: agent
service: agent
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: none}}
strategy:
  canary:
    steps: [{{setWeight: 10}}]
memory: {{uri: "{uri}", onPromote: replay}}
"""


def test_the_memory_folder_is_refused_outside_the_allowed_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "memories"
    allowed.mkdir()
    policy = SpecPolicy(allow_paths=(allowed,))
    assert policy.refusals(load_spec_text(_spec(allowed / "agent"))) == []
    refused = policy.refusals(load_spec_text(_spec(allowed / ".." / "elsewhere")))
    assert [".".join(where) for where, _ in refused] == ["memory.uri"]
    assert "--allow-path" in refused[0][1]
