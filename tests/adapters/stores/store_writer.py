"""A writer process for the store's multi-process tests (run as a script, never collected).

``contend URL NAME WRITER COUNT``: make COUNT saves to NAME, reloading and retrying on conflict.
``crash URL NAME``: save to NAME in a tight loop until killed (``ready`` after the first save); every
save carries three events and one window tagged with the revision it creates, so a half-written save would show.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the `support` package

from rollwise.adapters.stores.sql import SqlStore
from rollwise.core.protocols import ConflictError
from support.store import make_event, make_window


def contend(store: SqlStore, name: str, writer: int, count: int) -> None:
    print("ready", flush=True)
    sys.stdin.readline()  # all writers start together, so their saves really interleave
    conflicts = 0
    for _ in range(count):
        while True:
            record = store.get(name)
            revision = record.revision + 1
            events = [make_event(name, "step", writer=writer, revision=revision, part=part) for part in (1, 2)]
            try:
                store.save(record.model_copy(update={"decisions": record.decisions + 1}), events)
                break
            except ConflictError:
                conflicts += 1
    print(f"conflicts={conflicts}", flush=True)


def crash(store: SqlStore, name: str) -> None:
    first = True
    while True:
        record = store.get(name)
        revision = record.revision + 1
        events = [make_event(name, "step", revision=revision, part=part) for part in (1, 2, 3)]
        store.save(
            record.model_copy(update={"decisions": record.decisions + 3, "step_index": revision}),
            events,
            [(revision % 3, make_window(float(revision)))],
        )
        if first:  # "ready" once a save went through: the kill then lands in the loop, however slow the machine
            print("ready", flush=True)
            first = False


def main(argv: list[str]) -> None:
    mode, url, name = argv[:3]
    with SqlStore(url) as store:
        if mode == "contend":
            contend(store, name, int(argv[3]), int(argv[4]))
        elif mode == "crash":
            crash(store, name)
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
