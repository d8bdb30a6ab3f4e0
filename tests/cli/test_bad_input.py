"""Bad input to every command, run as users run it: a real ``rollwise`` process, and for ``--server``
a real ``rollwise serve``. Malformed, binary, huge and hostile input (NUL bytes, ``../`` paths, a
billion-laughs YAML bomb, nesting 300 and 5000 deep) must each end with a non-zero exit, one clear
line on stderr (one per problem for a spec, as ``FILE:LINE: field: message``), no traceback, and the
store exactly as it was.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

SPEC_LINE = re.compile(r"^\S.*:\d+: \S+: \S")  # FILE:LINE: field.path: message
DEEP = 300
UP = "../" * 30


def good_spec(name: str, route: Path, service: str | None = None) -> str:
    """A spec the CLI accepts (file router, no data plane); ``service`` swaps in hostile YAML for one field."""
    return "\n".join([
        "apiVersion: rollwise/v1", "kind: Rollout", f"name: {name}", f"service: {service or name}",
        "versions:", "  stable: {name: v1, address: 127.0.0.1:9001}", "  canary: {name: v2, address: 127.0.0.1:9002}",
        f"traffic: {{router: file, path: '{route}'}}", "metrics: {source: simulated}",
        "strategy:", "  canary:", "    steps:", "      - setWeight: 20", "      - pause: {untilApproved: true}", "",
    ])


def hostile_files(folder: Path) -> dict[str, Path]:
    """Spec files that are wrong in one way each, so each should give exactly one problem line."""
    route = folder / "route.json"
    laughs = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]  # billion laughs: 9**9 "lol"s once expanded
    laughs += [f"&{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]" for i in range(1, 9)]
    files = {
        "binary": b"\x89PNG\r\n\x1a\n" + bytes(range(0x80, 0x100)) + b"\xff\xfe",  # not UTF-8; no NUL (see "nul")
        "latin1": good_spec("shop", route, "caf\xe9").encode("latin-1"),
        "nul": good_spec("shop", route).replace("kind: Rollout", "kind: Roll\x00out").encode(),
        "huge": good_spec("shop", route).encode() + b"# " + b"x" * (5 * 1024 * 1024) + b"\n",
        "bomb": good_spec("shop", route, "[" + ", ".join(laughs) + "]").encode(),
        "deep-flow": good_spec("shop", route, "[" * DEEP + "]" * DEEP).encode(),
        "deep-block": (good_spec("shop", route, "x").replace("service: x\n", "service:\n" + "".join(
            "  " * (i + 1) + f"k{i}:\n" for i in range(DEEP)) + "  " * (DEEP + 1) + "v\n")).encode(),
        "deeper": ("[" * 5000 + "]" * 5000 + "\n").encode(),
        "not-a-spec": b"root:x:0:0:root:/root:/bin/bash\n",
    }
    paths = {}
    for kind, data in files.items():
        paths[kind] = folder / f"{kind}.yaml"
        paths[kind].write_bytes(data)
    paths["folder"] = folder
    paths["escape"] = Path(UP + "no-such-dir/spec.yaml")
    return paths


@dataclass
class World:
    folder: Path
    store: Path
    server: str
    server_store: Path
    files: dict[str, Path]
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                              timeout=180, cwd=self.folder, env=self.env)


def dump(path: Path) -> str:
    """The store's content, table by table (a file hash would change on a harmless WAL checkpoint)."""
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("bad-input")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWISE_")}
    env["HOME"] = str(folder / "home")
    store, server_store = folder / "local.db", folder / "server.db"
    spec = folder / "shop.yaml"
    spec.write_text(good_spec("shop", folder / "route.json"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rollwise", "serve", "--port", str(port), "--no-controller",
                               "--store", f"sqlite:///{server_store}", "--log-level", "warning",
                               "--allow-path", str(folder)],
                              env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    world = World(folder, store, f"http://127.0.0.1:{port}", server_store, hostile_files(folder), env)
    try:
        started = world.run("rollout", "start", str(spec), "--no-wait", "--store", f"sqlite:///{store}")
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(world.server + "/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, "rollwise serve did not start"
                time.sleep(0.2)
        remote = world.run("rollout", "start", str(spec), "--no-wait", "--server", world.server)
        assert remote.returncode == 0, remote.stderr
        yield world
    finally:
        server.terminate()
        server.wait(15)


@pytest.fixture
def unchanged(world: World) -> Iterator[None]:
    """Whatever the case did, neither store changed."""
    before = dump(world.store), dump(world.server_store)
    yield
    assert (dump(world.store), dump(world.server_store)) == before


def assert_refused(result: subprocess.CompletedProcess[str], spec_lines: int | None = None) -> list[str]:
    """Non-zero, no traceback; one ``error:`` line, or ``spec_lines`` lines in the FILE:LINE form."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if spec_lines is None:
        assert len(lines) == 1, lines
    else:
        assert len(lines) == spec_lines and all(SPEC_LINE.match(line) for line in lines), lines
    return lines


# ------------------------------------------------------------------------ spec files

SPEC_CASES = ["binary", "latin1", "nul", "huge", "bomb", "deep-flow", "deep-block", "deeper", "not-a-spec",
              "folder", "escape"]


@pytest.mark.usefixtures("unchanged")
def test_validate_names_each_bad_file_on_one_line(world: World) -> None:
    files = [str(world.files[kind]) for kind in SPEC_CASES]
    lines = assert_refused(world.run("validate", *files), spec_lines=len(files))
    assert [line.split(":")[0] for line in lines] == files  # one line per file, in order
    by_file = dict(zip(SPEC_CASES, lines, strict=True))
    assert "not UTF-8" in by_file["binary"]
    assert "not UTF-8" in by_file["latin1"] and by_file["latin1"].split(":")[1] == "4"  # the service: line
    assert "larger than" in by_file["huge"]
    assert "#x0000" in by_file["nul"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("kind", ["binary", "huge", "bomb", "deeper", "escape"])
def test_rollout_start_refuses_bad_spec_files(world: World, kind: str) -> None:
    assert_refused(world.run("rollout", "start", str(world.files[kind]), "--no-wait", "--store",
                             str(world.store)), spec_lines=1)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("kind", "where"), [("latin1", "local"), ("deep-block", "local"), ("binary", "server"),
                                             ("latin1", "server"), ("huge", "server")])
def test_rollout_update_refuses_bad_spec_files(world: World, kind: str, where: str) -> None:
    target = ["--store", str(world.store)] if where == "local" else ["--server", world.server]
    assert_refused(world.run("rollout", "update", "shop", str(world.files[kind]), *target), spec_lines=1)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("kind", ["nul", "deep-flow"])
def test_rollout_start_over_the_server_refuses_bad_spec_files(world: World, kind: str) -> None:
    assert_refused(world.run("rollout", "start", str(world.files[kind]), "--no-wait", "--server", world.server),
                   spec_lines=1)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("kind", ["binary", "bomb"])
def test_simulate_refuses_bad_spec_files(world: World, kind: str) -> None:
    assert_refused(world.run("simulate", str(world.files[kind])), spec_lines=1)


# ------------------------------------------------------------------------ option values and names

def spec(world: World) -> str:
    return str(world.folder / "shop.yaml")


OPTION_CASES = {
    "commit-time": (lambda w: ["rollout", "start", spec(w), "--no-wait", "--commit-time", "yesterday",
                               "--store", str(w.store)], "--commit-time"),
    "commit-time-server": (lambda w: ["rollout", "start", spec(w), "--no-wait", "--commit-time", "yesterday",
                                      "--server", w.server], "--commit-time"),
    "max-duration": (lambda w: ["simulate", spec(w), "--max-duration", "forever"], "--max-duration"),
    "rate-not-a-number": (lambda w: ["simulate", spec(w), "--canary-error-rate", "lots"], "--canary-error-rate"),
    "metrics-since": (lambda w: ["metrics", "--since", "forever", "--store", str(w.store)], "--since"),
    "schema-kind": (lambda w: ["schema", "../../etc/passwd"], "kind"),
    "unknown-command": (lambda w: ["rollout", "explode", "shop"], "explode"),
    "report-out-folder": (lambda w: ["report", "shop", "--out", str(w.folder), "--store", str(w.store)], "folder"),
    "report-out-missing-folder": (lambda w: ["report", "shop", "--out", UP + "nowhere/r.html", "--store",
                                             str(w.store)], "does not exist"),
    "report-o-is-a-format": (lambda w: ["report", "shop", "-o", "report.html", "--store", str(w.store)], "--out"),
    "explain-decision": (lambda w: ["explain", "shop", "--decision", "-1", "--store", str(w.store)], "shop"),
    "tokens-role": (lambda w: ["tokens", "create", "--role", "god", "--name", "x" * 10_000, "--store",
                               str(w.store)], "name"),
    "tokens-revoke": (lambda w: ["tokens", "revoke", "99999", "--store", str(w.store)], "99999"),
    "flags-file": (lambda w: ["flags", "eval", UP + "no-such-flags.json", "beta"], "no-such-flags.json"),
    "flags-binary": (lambda w: ["flags", "list", "--file", str(w.files["binary"])], "utf-8"),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_values_get_one_line(world: World, case: str) -> None:
    args, needle = OPTION_CASES[case]
    [line] = assert_refused(world.run(*args(world)))
    assert needle.lower() in line.lower()


NAMES = {"traversal": UP + "etc/passwd", "long": "n" * 50_000, "control": "shop\x1b[31m\u202e"}
NAMED = [("rollout", "status"), ("rollout", "promote"), ("rollout", "pause"), ("rollout", "resume"),
         ("rollout", "abort"), ("rollout", "approve"), ("rollout", "undo"), ("history",), ("explain",),
         ("report",)]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("command", NAMED, ids=" ".join)
def test_unknown_or_hostile_rollout_names_are_refused(world: World, command: tuple[str, ...]) -> None:
    name = NAMES[["traversal", "long", "control"][NAMED.index(command) % 3]]
    [line] = assert_refused(world.run(*command, name, "--store", str(world.store)))
    assert line.startswith("error: no rollout named")


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("command", [("rollout", "status"), ("rollout", "abort"), ("rollout", "undo"), ("history",)],
                         ids=" ".join)
def test_unknown_rollout_names_over_the_server(world: World, command: tuple[str, ...]) -> None:
    [line] = assert_refused(world.run(*command, NAMES["traversal"], "--server", world.server))
    assert line.startswith("error: no rollout named")


# ------------------------------------------------------------------------ stores that cannot be opened

STORES = {
    "refused-postgres": "postgresql://postgres:hunter2@127.0.0.1:1/rollwise",
    "unknown-scheme": "mongodb://127.0.0.1/rollwise",
    "not-a-database": "{binary}",
    "folder": "{folder}",
}
STORE_COMMANDS = [("rollout", "list"), ("rollout", "status", "shop"), ("controller", "--once"),
                  ("rollout", "abort", "shop"), ("metrics",), ("audit", "verify"), ("tokens", "list"),
                  ("history",)]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("command", STORE_COMMANDS[:4], ids=" ".join)
def test_a_store_that_cannot_be_opened_is_one_line(world: World, store: str, command: tuple[str, ...]) -> None:
    url = STORES[store].format(binary=world.files["binary"], folder=world.folder)
    before = world.files["binary"].read_bytes()
    [line] = assert_refused(world.run(*command, "--store", url))
    assert line.startswith("error: --store:")
    assert "hunter2" not in line
    assert world.files["binary"].read_bytes() == before


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("command", STORE_COMMANDS[4:], ids=" ".join)
def test_other_commands_name_the_store_that_cannot_be_opened(world: World, command: tuple[str, ...]) -> None:
    [line] = assert_refused(world.run(*command, "--store", str(world.files["binary"])))
    assert line.startswith("error: --store:") and "not a database" in line


@pytest.mark.usefixtures("unchanged")
def test_an_unreachable_server_is_one_line(world: World) -> None:
    [line] = assert_refused(world.run("rollout", "status", "shop", "--server", f"http://127.0.0.1:{free_port()}"))
    assert "cannot reach" in line


# ------------------------------------------------------------------------ reading never creates a store

READ_ONLY = {("rollout", "list"): 0, ("rollout", "status", "shop"): 1, ("history",): 0, ("history", "shop"): 1,
             ("explain", "shop"): 1, ("report", "shop"): 1, ("metrics",): 0}


@pytest.mark.parametrize("command", sorted(READ_ONLY), ids=" ".join)
def test_read_only_commands_do_not_create_a_store(world: World, tmp_path: Path, command: tuple[str, ...]) -> None:
    env = {**world.env, "HOME": str(tmp_path / "home")}
    missing = tmp_path / "nowhere" / "r.db"
    for store in (["--store", str(missing)], []):  # a named store, then the default ~/.rollwise/rollwise.db
        result = subprocess.run([sys.executable, "-m", "rollwise", *command, *store], capture_output=True,
                                text=True, timeout=120, env=env)
        assert result.returncode == READ_ONLY[command], result.stderr
        assert "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 1
        if READ_ONLY[command]:
            assert "no store at" in result.stderr
    assert not missing.parent.exists()
    assert not (tmp_path / "home").exists()
