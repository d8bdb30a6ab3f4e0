"""The store under several writer processes, and under writers killed with SIGKILL mid-save."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from rollwise.adapters.stores.sql import SqlStore
from support.store import make_record

WRITER = str(Path(__file__).with_name("store_writer.py"))


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WRITER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=30)


@pytest.mark.timeout(240)
def test_concurrent_writers_never_lose_a_save_or_an_event_seq(store_url: str) -> None:
    per_writer = 40
    with SqlStore(store_url) as store:
        store.create(make_record(), [])
    writers = [_spawn("contend", store_url, "checkout", str(w), str(per_writer)) for w in (1, 2)]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            out, err = writer.communicate(timeout=180)
            assert writer.returncode == 0, err
            print(out.strip())
    finally:
        for writer in writers:
            _stop(writer)

    with SqlStore(store_url) as store:
        record = store.get("checkout")
        events = store.events("checkout")
    assert record.revision == 1 + 2 * per_writer
    assert record.decisions == 2 * per_writer
    assert [e.seq for e in events] == list(range(1, 4 * per_writer + 1))
    for writer_id in (1, 2):
        assert sum(e.data["writer"] == writer_id for e in events) == 2 * per_writer
    # Each save's two events sit next to each other, stamped with the revision that save created.
    pairs = [(events[i], events[i + 1]) for i in range(0, len(events), 2)]
    assert [a.data["revision"] for a, _ in pairs] == list(range(2, record.revision + 1))
    assert all(a.data["revision"] == b.data["revision"] and a.data["writer"] == b.data["writer"] for a, b in pairs)


def _assert_whole_saves_only(store: SqlStore) -> int:
    """Every committed revision has exactly its three events and its one window; returns the revision."""
    record = store.get("checkout")
    saves = record.revision - 1
    events = store.events("checkout")
    windows = store.windows("checkout")
    assert record.decisions == 3 * saves
    assert record.step_index == (record.revision if saves else 0)
    assert [e.seq for e in events] == list(range(1, 3 * saves + 1))
    assert [(e.data["revision"], e.data["part"]) for e in events] == [
        (revision, part) for revision in range(2, record.revision + 1) for part in (1, 2, 3)
    ]
    assert [(stage, w.start) for stage, w in windows] == [
        (revision % 3, float(revision)) for revision in range(2, record.revision + 1)
    ]
    return record.revision


@pytest.mark.timeout(300)
def test_kill_minus_9_mid_save_never_leaves_a_partial_save(store_url: str) -> None:
    kills = 24
    rng = random.Random(20240611)
    with SqlStore(store_url) as store:
        store.create(make_record(), [])
    revisions = [1]
    for attempt in range(kills):
        writer = _spawn("crash", store_url, "checkout")
        try:
            if attempt % 4 == 0:
                time.sleep(rng.uniform(0.0, 0.6))  # may land while the writer opens and migrates
            else:
                assert writer.stdout is not None
                assert writer.stdout.readline().strip() == "ready", writer.stderr.read() if writer.stderr else ""
                time.sleep(rng.uniform(0.0, 0.15))
            writer.send_signal(signal.SIGKILL)
        finally:
            _stop(writer)
        with SqlStore(store_url) as store:
            revisions.append(_assert_whole_saves_only(store))

    print("revisions after each kill:", revisions)
    assert revisions == sorted(revisions)
    ready_kills = sum(1 for attempt in range(kills) if attempt % 4)
    assert revisions[-1] >= 1 + ready_kills  # every writer killed after "ready" had saved at least once
    with SqlStore(store_url) as store, store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
