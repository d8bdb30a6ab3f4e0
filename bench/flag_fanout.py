"""How fast a flag change reaches other flag servers: PostgreSQL LISTEN/NOTIFY vs NATS JetStream, side by side.

The transport alone: one publisher, one subscriber on its own connection, ``--messages`` changes
published ``--gap`` seconds apart; latency is publish to delivery in one process (one clock).
PostgreSQL: ``NOTIFY`` inside a committed transaction that also writes the document row (what a
flag change does), delivered to a ``LISTEN``ing psycopg connection. NATS: a JetStream publish
(acknowledged by the stream) delivered to a push subscription. The end-to-end figure (a kill on one
real ``rollwise serve`` visible through OFREP on three) is ``bench/flag_fleet.py``.

    python bench/flag_fanout.py --messages 300 --output bench/results/flag-fanout.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid

import psycopg

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
NATS = "nats://127.0.0.1:4222"


def _quantiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000, ordered[-1] * 1000)


def postgres(messages: int, gap: float) -> list[float]:
    table = f"bench_flags_{uuid.uuid4().hex[:8]}"
    channel = f"bench_{uuid.uuid4().hex[:8]}"
    sent: dict[int, float] = {}
    latencies: list[float] = []
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {table} (name text primary key, version int, document text)")
        admin.execute(f"INSERT INTO {table} VALUES ('default', 0, '{{}}')")
    listener = psycopg.connect(PG, autocommit=True)
    listener.execute(f"LISTEN {channel}")
    done = threading.Event()

    def listen() -> None:
        for note in listener.notifies():
            latencies.append(time.perf_counter() - sent[int(note.payload)])
            if len(latencies) == messages:
                done.set()
                return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        with psycopg.connect(PG) as writer:
            for version in range(1, messages + 1):
                with writer.transaction():
                    writer.execute(f"UPDATE {table} SET version = %s, document = %s WHERE name = 'default'",
                                   (version, '{"flags": {}}'))
                    writer.execute("SELECT pg_notify(%s, %s)", (channel, str(version)))
                    sent[version] = time.perf_counter()  # the commit below is what delivers it
                time.sleep(gap)
        done.wait(30)
    finally:
        listener.close()
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f"DROP TABLE {table}")
    return latencies


async def _nats(messages: int, gap: float) -> list[float]:
    import nats

    client = await nats.connect(NATS)
    js = client.jetstream()
    stream = f"BENCH_FLAGS_{uuid.uuid4().hex[:8].upper()}"
    subject = f"bench.flags.{stream.lower()}"
    await js.add_stream(name=stream, subjects=[subject])
    sent: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_message(msg: object) -> None:
        latencies.append(time.perf_counter() - sent[int(msg.data)])  # type: ignore[attr-defined]
        await msg.ack()  # type: ignore[attr-defined]
        if len(latencies) == messages:
            done.set()

    subscriber = await nats.connect(NATS)
    await subscriber.jetstream().subscribe(subject, cb=on_message, ordered_consumer=False, manual_ack=True)
    try:
        for version in range(1, messages + 1):
            sent[version] = time.perf_counter()
            await js.publish(subject, str(version).encode())
            await asyncio.sleep(gap)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await js.delete_stream(stream)
        await subscriber.close()
        await client.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.01)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    rows = {"PostgreSQL LISTEN/NOTIFY (document row + NOTIFY, one transaction)": postgres(args.messages, args.gap),
            "NATS JetStream (acked publish, push subscription)": asyncio.run(_nats(args.messages, args.gap))}
    lines = ["# Flag change fan-out: PostgreSQL LISTEN/NOTIFY vs NATS JetStream", "",
             f"Command: `python bench/flag_fanout.py --messages {args.messages} --gap {args.gap}"
             + (f" --output {args.output}`" if args.output else "`"), "",
             f"Both servers on this machine (2 cores, shared; load average {os.getloadavg()[0]:.1f} at the end). "
             "Latency from publish (PostgreSQL: commit) to delivery, in one process.", "",
             "| transport | delivered | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for name, samples in rows.items():
        p50, p99, top = _quantiles(samples)
        lines.append(f"| {name} | {len(samples)}/{args.messages} | {p50:.2f} | {p99:.2f} | {top:.2f} |")
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
