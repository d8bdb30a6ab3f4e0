"""Flag files whose rules can never evaluate are refused with `FILE:LINE: path: message` (issue 11, items 8/9).

`flags validate` exits 2 for each; a running `serve --flags` keeps the last good set, says why in one line
(status `last_error` and log) and never logs a traceback; binary and non-UTF-8 files are one clear line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from rollwise.flags.cli import flags_app
from rollwise.flags.definitions import FlagValidationError, load_document
from rollwise.flags.evaluator import FlagSet
from rollwise.flags.repository import FlagRepository
from rollwise.flags.rules import MAX_RULE_DEPTH

runner = CliRunner()
TESTBED = Path(__file__).parent / "testbed"
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def flag(targeting: Any, variants: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "state": "ENABLED",
        "variants": variants or {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": targeting,
    }


def doc(targeting: Any, evaluators: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"flags": {"f": flag(targeting)}}
    if evaluators is not None:
        out["$evaluators"] = evaluators
    return out


def nested(levels: int) -> dict[str, Any]:
    rule: Any = "on"
    for _ in range(levels):
        rule = {"if": [True, rule, "off"]}
    return rule  # type: ignore[no-any-return]


EMAIL = {"var": "email"}
# (document, path of the problem, part of the message)
NEVER_EVALUATE = [
    (doc({"if": [{"nope": [1]}, "on", "off"]}), "flags.f.targeting.if.0.nope", "unknown operator 'nope'"),
    (doc({"if": [{"$ref": "missing"}, "on", "off"]}), "flags.f.targeting.if.0.$ref", "unknown evaluator $ref"),
    (doc({"$ref": "a"}, {"a": {"$ref": "b"}, "b": {"if": [{"$ref": "a"}, "on"]}}), "$evaluators.a.$ref",
     "$ref cycle: a -> b -> a"),
    (doc({"fractional": [["on", 50], ["of", 50]]}), "flags.f.targeting.fractional.1.0",
     "'of', which is not a variant"),
    (doc({"fractional": [["on", 0], ["off", 0]]}), "flags.f.targeting.fractional", "every fractional weight is zero"),
    (doc({"fractional": [["on", -5], ["off", 10]]}), "flags.f.targeting.fractional.0.1", "must not be negative"),
    (doc({"fractional": [["on", 12.5], ["off", 10]]}), "flags.f.targeting.fractional.0.1", "whole number"),
    (doc({"if": [{"==": [EMAIL]}, "on", "off"]}), "flags.f.targeting.if.0.==", "takes exactly 2 arguments, got 1"),
    (doc({"if": [{"in": ["a", "b", "c"]}, "on"]}), "flags.f.targeting.if.0.in", "takes exactly 2 arguments, got 3"),
    (doc({"if": [{"==": [{"cat": []}, "x"]}, "on"]}), "flags.f.targeting.if.0.==.0.cat", "at least 1 argument"),
    (doc({"if": [{"==": [{"substr": ["abc"]}, "a"]}, "on"]}), "flags.f.targeting.if.0.==.0.substr", "2 to 3"),
    (doc({"if": [{"starts_with": [EMAIL]}, "on"]}), "flags.f.targeting.if.0.starts_with", "exactly 2"),
    (doc({"if": [{"ends_with": [EMAIL, "a", "b"]}, "on"]}), "flags.f.targeting.if.0.ends_with", "exactly 2"),
    (doc({"if": [{"sem_ver": [{"var": "v"}, ">="]}, "on"]}), "flags.f.targeting.if.0.sem_ver", "exactly 3"),
    (doc({"if": [{"sem_ver": [{"var": "v"}, "=>", "1.0.0"]}, "on"]}), "flags.f.targeting.if.0.sem_ver.1",
     "sem_ver operator '=>'"),
    (doc({"if": [True]}), "flags.f.targeting.if", "takes at least 2 arguments, got 1"),
    (doc({"fractional": [{"var": "targetingKey"}]}), "flags.f.targeting.fractional", "at least one bucket"),
    (doc({"fractional": [[{"var": "email"}], ["on", 1], ["off", 1]]}), "flags.f.targeting.fractional.0",
     "seed is written without brackets"),
]


@pytest.mark.parametrize(("document", "path", "message"), NEVER_EVALUATE)
def test_validate_refuses_rules_that_can_never_evaluate(tmp_path: Path, document: Any, path: str, message: str) -> None:
    file = tmp_path / "flags.json"
    file.write_text(json.dumps(document, indent=2))
    result = runner.invoke(flags_app, ["validate", str(file)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == (2 if "cycle" in message else 1), lines  # a cycle is reported at each of its refs
    m = PROBLEM_LINE.match(lines[0])
    assert m is not None, lines[0]
    assert (m["file"], m["path"]) == (str(file), path) and message in m["message"]
    assert int(m["line"]) > 1  # mapped to the line of the node, not the top of the file


def test_line_numbers_point_at_the_node_in_json_and_yaml(tmp_path: Path) -> None:
    json_file = tmp_path / "flags.json"
    json_file.write_text(json.dumps(doc({"if": [{"nope": [1]}, "on", "off"]}), indent=2))
    text = json_file.read_text().splitlines()
    [problem] = load_document(json_file).rule_problems
    line = int(PROBLEM_LINE.match(problem)["line"])  # type: ignore[index]
    assert '"nope"' in text[line - 1]
    yaml_file = tmp_path / "flags.yaml"
    yaml_file.write_text(
        "# checkout flags\nflags:\n  f:\n    state: ENABLED\n    variants: {'on': true, 'off': false}\n"
        "    defaultVariant: 'off'\n    targeting:\n      fractional:\n        - ['on', 50]\n"
        "        - [of, .inf]  # typo and an infinite weight\n"
    )
    result = runner.invoke(flags_app, ["validate", str(yaml_file)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert [ln.split(": ", 2)[0] for ln in lines] == [f"{yaml_file}:10", f"{yaml_file}:10"]
    assert any("must be finite" in ln for ln in lines) and any("'of'" in ln for ln in lines)


def test_a_rule_nested_300_levels_is_refused_with_the_limit(tmp_path: Path) -> None:
    file = tmp_path / "deep.json"
    file.write_text(json.dumps(doc(nested(300))))
    with pytest.raises(FlagValidationError) as info:
        FlagSet.load(file)
    [problem] = info.value.problems
    assert f"nested more than {MAX_RULE_DEPTH} levels deep" in problem and "flags.f.targeting.if" in problem
    assert len(problem) < 300
    FlagSet.from_dict(doc(nested(20)))  # ordinary nesting still loads


def test_every_flagd_testbed_file_loads_and_only_its_deliberate_error_flags_are_reported() -> None:
    """The testbed keeps broken rules on purpose (PARSE_ERROR and null-result scenarios): they still load and
    evaluate as flagd does, and `flags validate` names exactly those flags."""
    deliberate = re.compile(r"error|wrong-args|invalid|zero-weights|negative-weight|nonexistent|targeted-zero")
    files = sorted((TESTBED / "flags").glob("*.json")) + sorted((TESTBED / "evaluator" / "flags").glob("*.json"))
    clean = 0
    for path in files:
        flag_set = FlagSet.load(path)
        problems = flag_set.document.rule_problems
        flagged = {PROBLEM_LINE.match(p)["path"].split(".")[1] for p in problems}  # type: ignore[index]
        assert all(deliberate.search(key) for key in flagged), (path.name, flagged)
        result = runner.invoke(flags_app, ["validate", str(path)])
        assert result.exit_code == (2 if problems else 0), result.output
        clean += not problems
    assert clean >= 7


def test_a_running_repository_keeps_the_last_good_set_when_a_new_file_breaks_a_rule(tmp_path: Path) -> None:
    file = tmp_path / "flags.json"
    file.write_text(json.dumps(doc({"fractional": [["on", 50], ["off", 50]]})))
    repo = FlagRepository(file, apply_schedules=False)
    etag = repo.etag
    for bad in (doc({"fractional": [["on", 0], ["off", 0]]}), doc(nested(300)), doc({"nope": []})):
        file.write_text(json.dumps(bad))
        assert repo.reload() is False
        assert repo.etag == etag and repo.last_error is not None and "\n" not in repo.last_error
    file.write_bytes(b"\xff\xfe\x00")
    assert repo.reload() is False and "not a text file" in (repo.last_error or "")
    # A change through rollwise may not add a broken rule either.
    file.write_text(json.dumps(doc({"fractional": [["on", 50], ["off", 50]]})))
    with pytest.raises(FlagValidationError, match="unknown operator"):
        repo.dark_launch("f", {"nope": [1]}, "ana", "try")


BAD_BYTES = {
    "latin1.json": '{"flags": {"caf\u00e9": {}}}'.encode("latin-1"),
    "binary.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
}


@pytest.mark.parametrize("name", sorted(BAD_BYTES))
def test_binary_and_non_utf8_flag_files_are_one_line_for_every_flags_command(tmp_path: Path, name: str) -> None:
    file = tmp_path / name
    file.write_bytes(BAD_BYTES[name])
    commands = [
        ["validate", str(file)],
        ["eval", str(file), "f"],
        ["list", "--file", str(file)],
        ["history", "--file", str(file)],
        ["kill", "f", "--file", str(file), "-r", "x", "-a", "ana"],
        ["restore", "f", "--file", str(file), "-r", "x", "-a", "ana"],
        ["rollout", "f", "--file", str(file), "-r", "x", "-a", "ana", "--percent", "5"],
        ["schedule", "f", "--file", str(file), "-r", "x", "-a", "ana", "--at", "2030-01-01T00:00:00Z", "--enable"],
    ]
    for i, args in enumerate(commands):
        if i < 2:  # as users run it: a separate process
            proc = subprocess.run([sys.executable, "-m", "rollwise", "flags", *args], capture_output=True, text=True,
                                  timeout=60)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        else:
            result = runner.invoke(flags_app, args)
            code, stdout, stderr = result.exit_code, result.stdout, result.stderr
        assert code == 2, (args, stderr)
        assert "Traceback" not in stderr and stdout == ""
        [line] = stderr.strip().splitlines()
        assert line.startswith(str(file)) and ("not UTF-8" in line or "not a text file" in line)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written beside it
    assert file.read_bytes() == BAD_BYTES[name]


@contextlib.contextmanager
def serve(flags: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollwise", "serve", "--flags", str(flags), "--port", str(port), "--no-controller",
         "--store", f"sqlite:///{tmp_path / 'serve.db'}", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "rollwise serve did not start"
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _replace(path: Path, document: Any) -> None:
    """Write like an editor or config map does (rename over), so a poll never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)


def _status(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/api/v1/flags", timeout=5).json()  # type: ignore[no-any-return]


def _wait_for(test: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")


@pytest.mark.timeout(180)
def test_serve_keeps_serving_and_reports_one_line_per_bad_file(tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(doc({"fractional": [["on", 100], ["off", 0]]})))
    ofrep = "/ofrep/v1/evaluate/flags/f"
    with serve(flags, tmp_path) as (base, proc):
        assert httpx.post(base + ofrep, json={"context": {"targetingKey": "u1"}}).json()["value"] is True
        _replace(flags, doc(nested(300)))
        error = _wait_for(lambda: _status(base)["last_error"])
        assert f"nested more than {MAX_RULE_DEPTH} levels deep" in error and "\n" not in error
        time.sleep(1.0)  # several polls of the same bad file
        _replace(flags, doc({"fractional": [["on", 50], ["of", 50]]}))
        _wait_for(lambda: "not a variant" in (_status(base)["last_error"] or ""))
        assert httpx.post(base + ofrep, json={"context": {"targetingKey": "u1"}}).json()["value"] is True
        _replace(flags, doc({"fractional": [["on", 0], ["off", 100]]}))
        _wait_for(lambda: _status(base)["last_error"] is None)
        assert httpx.post(base + ofrep, json={"context": {"targetingKey": "u1"}}).json()["value"] is False
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert "Traceback" not in stderr and "RecursionError" not in stderr
    rejected = [ln for ln in stderr.splitlines() if "rejected" in ln]
    assert len(rejected) == 2, stderr[-2000:]


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b"{}\x00", json.dumps(doc(nested(300))).encode()])
def test_serve_refuses_to_start_on_an_unservable_flag_file(tmp_path: Path, content: bytes) -> None:
    flags = tmp_path / "flags.json"
    flags.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "rollwise", "serve", "--flags", str(flags), "--no-controller",
         "--store", f"sqlite:///{tmp_path / 'serve.db'}"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(str(flags))
    assert not (tmp_path / "serve.db").exists()
