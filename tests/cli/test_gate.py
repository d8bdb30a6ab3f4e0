"""``rollwise rollout start --wait`` as a CI gate (issue 17, part 4): one exit code per outcome, a JUnit
XML and a Markdown summary, here (local store, foreground controller) and against ``rollwise serve``.

Each rollout is judged on a Prometheus query API (tests/support/fake_prometheus.py) serving two
versions' counters: the good canary promotes (0), the bad one rolls back (3), an approval step
pauses for a person (4, ``--exit-on-pause``), and a long pause outlives ``--timeout`` (5).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.common import REPO
from support.fake_prometheus import QUERIES_YAML, FakePrometheus, Profile, fake_prometheus
from support.serve_process import ServeProcess, rollwise_serve

pytestmark = pytest.mark.timeout(300)

SPEC = """
name: NAME
service: shop
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: CANARY, address: 127.0.0.1:9002}
traffic: {router: none}
metrics:
  source: prometheus
  prometheusUrl: URL
QUERIES
strategy:
  canary:
    analysis:
      judge: threshold
      interval: 1s
      minStageTime: 1s
      failureLimit: 2
      baselineHistory: 0s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 1%"}
        - {name: latency-p99, type: latency, quantile: 0.99, slo: "< 500ms"}
    steps:
STEPS"""

PROMOTES = "      - setWeight: 50\n      - pause: {duration: 2s}\n      - setWeight: 100\n"
APPROVAL = "      - setWeight: 20\n      - pause: {untilApproved: true}\n      - setWeight: 100\n"
LONG = "      - setWeight: 20\n      - pause: {duration: 1h}\n      - setWeight: 100\n"

GOOD, BAD = "v2", "v2-bad"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[FakePrometheus]:
    with fake_prometheus({"v1": Profile(error_rate=0.001), GOOD: Profile(error_rate=0.001),
                          BAD: Profile(error_rate=0.3, latency_ms=800)}) as fake:
        yield fake


def spec_file(tmp_path: Path, prometheus: FakePrometheus, name: str, canary: str, steps: str) -> Path:
    text = (SPEC.replace("NAME", name).replace("CANARY", canary).replace("URL", prometheus.url)
            .replace("QUERIES\n", QUERIES_YAML).replace("STEPS", steps))
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def rollwise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                          timeout=200, cwd=REPO)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, prometheus: FakePrometheus) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("gate-serve")
    with rollwise_serve(f"sqlite:///{work / 'serve.db'}", work, "--allow-url", prometheus.url + "/") as served:
        yield served


@pytest.fixture(params=["local", "server"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The CLI options naming where the rollout lives: a local store, or ``--server`` (no token: loopback admin)."""
    if request.param == "local":
        return ["--store", f"sqlite:///{tmp_path / 'local.db'}"]
    served: ServeProcess = request.getfixturevalue("server")
    return ["--server", served.url]


def junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuite"
    cases = root.findall("testcase")
    assert int(root.get("tests", "-1")) == len(cases)
    assert int(root.get("failures", "-1")) == sum(1 for c in cases if c.find("failure") is not None)
    return root


def test_promoted_exits_0_with_a_passing_junit_and_summary(tmp_path: Path, prometheus: FakePrometheus,
                                                           where: list[str]) -> None:
    name = f"good-{where[0].strip('-')}"
    spec = spec_file(tmp_path, prometheus, name, GOOD, PROMOTES)
    result = rollwise("rollout", "start", str(spec), "--wait", "--timeout", "150s", "--junit",
                      str(tmp_path / "j.xml"), "--summary", str(tmp_path / "s.md"), *where)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{name}: Succeeded" in result.stdout
    root = junit(tmp_path / "j.xml")
    names = [c.get("name") for c in root.findall("testcase")]
    assert "rollout outcome" in names and any(n.endswith(": error-rate") for n in names), names
    assert any(n.endswith(": latency-p99") for n in names), names
    assert root.get("failures") == "0"
    summary = (tmp_path / "s.md").read_text()
    assert f"`{name}` promoted" in summary and "| error-rate |" in summary and "exit code 0" in summary


def test_rolled_back_exits_3_and_junit_fails_with_the_reason_and_numbers(
        tmp_path: Path, prometheus: FakePrometheus, where: list[str]) -> None:
    name = f"bad-{where[0].strip('-')}"
    spec = spec_file(tmp_path, prometheus, name, BAD, PROMOTES)
    result = rollwise("rollout", "start", str(spec), "--timeout", "150s", "--junit", str(tmp_path / "j.xml"),
                      "--summary", str(tmp_path / "s.md"), "-o", "json", *where)
    assert result.returncode == 3, result.stdout + result.stderr
    assert json.loads(result.stdout)["phase"] == "RolledBack"
    root = junit(tmp_path / "j.xml")
    failed = {c.get("name"): c.find("failure") for c in root.findall("testcase") if c.find("failure") is not None}
    assert "rollout outcome" in failed and int(root.get("failures", "0")) >= 2, failed
    metric = next(f for n, f in failed.items() if n != "rollout outcome")
    assert metric is not None and metric.text is not None
    assert re.search(r"canary \d+ errors/\d+ requests; baseline \d+ errors/\d+ requests", metric.text), metric.text
    assert "statistic" in metric.text and "threshold" in metric.text  # the numbers behind the verdict
    outcome = failed["rollout outcome"]
    assert outcome is not None and "RolledBack" in (outcome.get("message") or "")
    summary = (tmp_path / "s.md").read_text()
    assert f"`{name}` rolled back" in summary and "**rollback**" in summary and "exit code 3" in summary


def test_paused_for_a_person_exits_4(tmp_path: Path, prometheus: FakePrometheus, where: list[str]) -> None:
    name = f"approve-{where[0].strip('-')}"
    spec = spec_file(tmp_path, prometheus, name, GOOD, APPROVAL)
    result = rollwise("rollout", "start", str(spec), "--exit-on-pause", "--timeout", "150s",
                      "--junit", str(tmp_path / "j.xml"), "-o", "json", *where)
    assert result.returncode == 4, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["phase"] == "Paused" and "approval" in summary["paused_reason"]
    outcome = next(c for c in junit(tmp_path / "j.xml").findall("testcase") if c.get("name") == "rollout outcome")
    skipped = outcome.find("skipped")
    assert skipped is not None and "paused for a person" in (skipped.get("message") or "")


def test_timed_out_exits_5(tmp_path: Path, prometheus: FakePrometheus, where: list[str]) -> None:
    name = f"slow-{where[0].strip('-')}"
    spec = spec_file(tmp_path, prometheus, name, GOOD, LONG)
    result = rollwise("rollout", "start", str(spec), "--timeout", "4s", "--summary", str(tmp_path / "s.md"),
                      "-o", "json", *where)
    assert result.returncode == 5, result.stdout + result.stderr
    assert json.loads(result.stdout)["phase"] == "Progressing"
    assert "timed out" in (tmp_path / "s.md").read_text()


def test_bad_timeout_is_one_line_and_exit_2(tmp_path: Path, prometheus: FakePrometheus) -> None:
    spec = spec_file(tmp_path, prometheus, "x", GOOD, LONG)
    result = rollwise("rollout", "start", str(spec), "--timeout", "soon", "--store",
                      f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2 and result.stderr.startswith("error: --timeout:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_documents_the_exit_codes() -> None:
    text = " ".join(rollwise("rollout", "start", "--help").stdout.split())
    for words in ("0 promoted", "3 rolled back or aborted", "4 paused for a person", "5 --timeout reached"):
        assert words in text, words
