"""Specs posted to a real ``rollwise serve`` may only name files, URLs, processes and upstreams the operator
allowed (``--allow-path``, ``--allow-url``, ``--allow-upstream``, ``--allow-commands``). Anything else is a
422 naming the field, an audit row saying who tried what, and nothing written."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from support.api import FLAGS, audit_rows, file_spec, make_tokens
from support.serve_process import ServeProcess, rollwise_serve

YAML = {"Content-Type": "application/yaml"}
PRECIOUS = "do not overwrite me\n"


def _traffic(spec: str, traffic: str) -> str:
    lines = spec.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("traffic:"))
    lines[index] = f"traffic: {traffic}"
    return "\n".join(lines) + "\n"


def _hostile_specs(tmp_path: Path, allowed: Path, target: Path) -> list[tuple[str, str, str]]:
    """(case, field the refusal must name, spec) for each way out of the allowed folder."""
    base = file_spec("hostile", allowed / "ok.json")
    file_route = lambda path: _traffic(base, f"{{router: file, path: {json.dumps(str(path))}}}")  # noqa: E731
    return [
        ("absolute path outside", "traffic.path", file_route(target)),
        ("dot-dot escape", "traffic.path", file_route(f"{allowed}/../outside/{target.name}")),
        ("symlinked folder", "traffic.path", file_route(allowed / "linkdir" / target.name)),
        ("symlinked file", "traffic.path", file_route(allowed / "linkfile")),
        ("relative to the server's folder", "traffic.path", file_route(f"outside/{target.name}")),
        ("flag file outside", "traffic.flagsFile",
         _traffic(base, f"{{router: flag, flag: new-checkout, flagsFile: {json.dumps(str(target))}}}")),
        ("file:// Prometheus", "metrics.prometheusUrl",
         base.replace("metrics: {source: simulated}", "metrics: {source: prometheus, prometheusUrl: 'file:///etc/passwd'}")),
        ("metadata-service Prometheus", "metrics.prometheusUrl",
         base.replace("metrics: {source: simulated}",
                      "metrics: {source: prometheus, prometheusUrl: 'http://169.254.169.254/latest/'}")),
        ("webhook to a local admin port", "notify.webhook",
         base + "notify: {webhook: 'http://127.0.0.1:1/admin/delete'}\n"),
        ("slack URL dot-dot out of the allowed prefix", "notify.slack",
         base + "notify: {slack: 'http://127.0.0.1:9/hooks/../admin'}\n"),
        ("look-alike host", "notify.teams", base + "notify: {teams: 'http://127.0.0.1.evil.test:9/hooks/x'}\n"),
        ("unset env reference", "notify.slackEnv", base + "notify: {slackEnv: ROLLWISE_NOTIFY_NOT_SET}\n"),
        ("remote upstream", "versions.canary.address",
         base.replace("canary: {name: v2, address: 127.0.0.1:9002}", "canary: {name: v2, address: 10.1.2.3:80}")),
        ("remote upstream in a pool", "versions.canary.addresses.1",
         base.replace("canary: {name: v2, address: 127.0.0.1:9002}",
                      "canary: {name: v2, addresses: ['127.0.0.1:9002', '10.1.2.3:80']}")),
        ("process", "versions.canary.command",
         base.replace("canary: {name: v2, address: 127.0.0.1:9002}", "canary: {name: v2, command: 'touch {port}'}")),
    ]


def _snapshot(path: Path) -> tuple[str, int]:
    return path.read_text(), stat.S_IMODE(path.stat().st_mode)


def _wait_for_weight(path: Path, weight: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and json.loads(path.read_text() or "{}").get("canary_weight") == weight):
        assert time.monotonic() < deadline, f"{path} never routed {weight}% to the canary"
        time.sleep(0.05)


def _assert_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(f": {field}: " in p for p in problems), problems


@pytest.mark.timeout(180)
def test_hostile_specs_are_refused_audited_and_write_nothing(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'rollwise.db'}"
    tokens = make_tokens(store_url)
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    target = outside / "precious.txt"
    target.write_text(PRECIOUS)
    target.chmod(0o640)
    (allowed / "linkdir").symlink_to(outside, target_is_directory=True)
    (allowed / "linkfile").symlink_to(target)
    cases = _hostile_specs(tmp_path, allowed, target)

    served_flags = tmp_path / "served" / "flags.json"
    served_flags.parent.mkdir()
    served_flags.write_text(json.dumps(FLAGS))
    with rollwise_serve(store_url, tmp_path, "--allow-path", str(allowed), "--allow-url", "http://127.0.0.1:9/hooks/",
                        "--flags", str(served_flags), "--log-level", "warning") as server, \
            server.client(tokens["deployer"]) as deployer:
        for case, field, spec in cases:
            _assert_refused(deployer.post("/api/v1/rollouts", content=spec.encode(), headers=YAML,
                                          params={"reason": case}), field)
        assert deployer.get("/api/v1/rollouts").json() == [], "a refused spec must not create a rollout"
        flag_rollout = _traffic(file_spec("flagged", allowed / "unused.json"),
                                f"{{router: flag, flag: new-checkout, flagsFile: {json.dumps(str(served_flags))}}}")
        assert deployer.post("/api/v1/rollouts", content=flag_rollout.encode(), headers=YAML).status_code == 201
        _assert_update_refused(server, tokens["releaser"], allowed, target)

    assert _snapshot(target) == (PRECIOUS, 0o640)
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"], "nothing may appear beside the target"
    refused = [row for row in audit_rows(store_url) if row.action == "rollout.start.refused"]
    assert [row.reason for row in refused] == [case for case, _, _ in cases]
    for row, (case, field, _) in zip(refused, cases, strict=True):
        assert row.actor == "deployer-bot" and row.role == "deployer" and row.target == "hostile"
        assert row.after["outcome"] == "refused" and row.after["status"] == 422
        assert field in [p["field"] for p in row.after["problems"]], (case, row.after)
    updates = [row for row in audit_rows(store_url) if row.action == "rollout.update.refused"]
    assert len(updates) == 1 and updates[0].actor == "releaser-bot"
    assert updates[0].after["problems"][0]["field"] == "traffic.path"


def _assert_update_refused(server: ServeProcess, releaser_token: str, allowed: Path, target: Path) -> None:
    """An allowed path still works; a PUT moving it outside is refused and the route keeps its file."""
    good = file_spec("kept", allowed / "kept.json", pause="1h")
    with server.client(releaser_token) as releaser:
        assert releaser.post("/api/v1/rollouts", content=good.encode(), headers=YAML).status_code == 201
        _wait_for_weight(allowed / "kept.json", 20)  # the controller thread wrote the allowed route file
        moved = _traffic(good, f"{{router: file, path: {json.dumps(str(target))}}}")
        refused = releaser.put("/api/v1/rollouts/kept/spec", content=moved.encode(), headers=YAML)
        _assert_refused(refused, "traffic.path")
        assert releaser.get("/api/v1/rollouts/kept").json()["spec"]["traffic"]["path"] == str(allowed / "kept.json")
        assert releaser.post("/api/v1/rollouts/kept/promote", json={}).status_code == 200


def test_allowed_paths_and_urls_are_accepted_inside_the_allow_lists(tmp_path: Path) -> None:
    """The same checks in process: what lies inside the allow-lists passes (including a symlink that stays in)."""
    from rollwise.api.policy import SpecPolicy
    from rollwise.spec import load_spec_text

    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "inner").symlink_to(allowed / "sub", target_is_directory=True)
    policy = SpecPolicy(allow_paths=(allowed,), allow_urls=("https://hooks.slack.com/", "http://prom:9090"),
                        allow_upstreams=("10.0.0.0/8", "api.internal"), env={"ROLLWISE_NOTIFY_TEAMS": "https://t"})
    spec = file_spec("fine", allowed / "inner" / "r.json").replace(
        "metrics: {source: simulated}", "metrics: {source: prometheus, prometheusUrl: 'http://prom:9090/'}")
    spec = spec.replace("127.0.0.1:9001", "10.4.5.6:80").replace("127.0.0.1:9002", "api.internal:8080")
    spec += "notify: {slack: 'https://hooks.slack.com/services/T/B/x', teamsEnv: ROLLWISE_NOTIFY_TEAMS}\n"
    assert policy.refusals(load_spec_text(spec, "fine.yaml")) == []
    assert os.path.realpath(allowed / "inner" / "r.json").startswith(str(allowed))


@pytest.mark.parametrize(("url", "inside"), [
    ("https://hooks.slack.com/services/T/B/x", True),
    ("https://hooks.slack.com:443/services/x", True),
    ("https://hooks.slack.com.evil.test/services/x", False),
    ("https://hooks.slack.com@evil.test/services/x", False),
    ("https://user:pw@hooks.slack.com/services/x", False),
    ("http://hooks.slack.com/services/x", False),
    ("https://hooks.slack.com/services/../admin", False),
    ("https://hooks.slack.com/services/%2e%2e/admin", False),
    ("https://hooks.slack.com/servicesX", False),
    ("https://hooks.slack.com:8443/services/x", False),
])
def test_url_prefixes_compare_scheme_host_port_and_whole_path_segments(url: str, inside: bool) -> None:
    from rollwise.api.policy import SpecPolicy

    refusals = SpecPolicy(allow_urls=("https://hooks.slack.com/services",))._url(("notify", "slack"), url, secret=True)
    assert (refusals == []) is inside, refusals
    assert all("services/T" not in why and "pw" not in why for _, why in refusals)  # never echoes the token
