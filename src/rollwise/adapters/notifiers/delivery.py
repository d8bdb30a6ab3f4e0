"""What the notifiers say, and how a message reaches a webhook without ever slowing a rollout down.

Shared by the Slack, Teams and generic webhook notifiers (the only modules that import it):

* ``NoticeBoard`` decides which events are worth a message and turns one into a channel-neutral
  ``Notice`` (title, versions, stage, a "why" line with canary vs baseline numbers, the culprit
  metric, a report link). Stage changes, endings, holds and rollback/inconclusive decisions get a
  message; routine ``continue`` verdicts do not. A rollback decision and the ``RolledBack`` phase
  event the engine commits with it become one message, not two.
* ``BackgroundSender`` owns one daemon thread and a bounded queue. ``submit`` never blocks and
  never raises; the thread posts each message with retries and exponential backoff, re-building
  the request per attempt (so a signed webhook gets a fresh timestamp on every try).
* ``DeliveryLog`` records every outcome (status, attempts, response code) in memory, optionally
  appends it to a JSONL file, and hands it to a store that offers ``record_notification`` (the SQL
  store's ``notifications`` table has those columns). The log is how tests, the CLI and people see
  that a message was delivered, retried or given up on.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from rollwise.core.evidence import Evidence, MetricEvidence, SideCounts, decision_of, evidence_of
from rollwise.core.model import Event, Phase, RolloutRecord
from rollwise.core.protocols import RecordsNotifications

log = logging.getLogger("rollwise.notify")

# Step kinds that move users from one stage to the next; "pause" steps only finish a wait.
STAGE_STEP_KINDS = frozenset({"setWeight", "cutover", "preview", "setMirror", "setHeaderRoute"})
NOTIFY_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.PAUSED})
NOTIFY_DECISIONS = frozenset({"rollback", "inconclusive"})


# ---------------------------------------------------------------- what to say


@dataclass(frozen=True)
class MetricLine:
    """One metric's evidence in words and numbers, ready for any channel."""

    name: str
    test: str
    action: str
    text: str  # "error-rate: canary 5.56% (5/90) vs baseline 0.00% (0/1930) …"
    canary: str | None = None
    baseline: str | None = None
    effect: str | None = None
    has_numbers: bool = True


@dataclass(frozen=True)
class Notice:
    """A channel-neutral message about one event."""

    kind: str  # stage | succeeded | rolled-back | aborted | paused | decision | undo | incident
    rollout: str
    service: str
    stable: str
    canary: str
    title: str
    summary: str
    event: Event
    weight: float | None = None
    previous_weight: float | None = None
    stage: int | None = None
    region: str | None = None
    why: str | None = None
    rule: str | None = None
    culprit: MetricLine | None = None
    metrics: tuple[MetricLine, ...] = ()
    report_url: str | None = None
    report_hint: str | None = None

    @property
    def failed(self) -> bool:
        return self.kind in ("rolled-back", "aborted", "undo")

    @property
    def severity(self) -> str:
        if self.failed:
            return "bad"
        if self.kind in ("paused", "decision"):
            return "warn"
        return "good"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["event"] = self.event.model_dump(mode="json")
        return data


def format_value(value: float | None, metric_type: str | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if metric_type == "errorRate":
        return f"{value * 100:.2f}%"
    if metric_type == "latency":
        return f"{value:.1f} ms"
    return f"{value:.4g}"


_BAD_WORD = {"errorRate": "errors", "latency": "slow"}


def _side(stats: SideCounts, metric_type: str | None) -> str | None:
    """A side's counts as a person reads them: '4.46% (9 errors of 202)'; 'key value' otherwise.

    Judges report counts as requests/errors (threshold) or trials/bad (sequential attribution tests,
    where "bad" is an error or a request slower than the frozen latency bar).
    """
    for total, bad in ((stats.requests, stats.errors), (stats.trials, stats.bad)):
        if total and bad is not None:
            word = _BAD_WORD.get(metric_type or "", "bad")
            return f"{bad / total * 100:.2f}% ({bad:g} {word} of {total:g})"
    parts = []
    for key, value in list(stats.model_dump().items())[:4]:
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts) or None


def describe_metric(result: MetricEvidence, metric_type: str | None = None) -> MetricLine:
    """Render one metric's evidence in words: canary vs baseline, statistic vs threshold, effect."""
    name, test = result.metric, result.test
    canary = _side(result.canary, metric_type)
    baseline = _side(result.baseline, metric_type)
    pieces = [f"{name}:"]
    if canary or baseline:
        pieces.append(f"canary {canary or 'n/a'} vs baseline {baseline or 'n/a'}")
    else:  # an SLO gate can decide before the comparison has numbers (e.g. the latency bar not frozen yet)
        canary = _slo_side(result, metric_type)
        if canary:
            pieces.append(f"canary {canary}")
    statistic, threshold = result.statistic, result.threshold
    if statistic is not None:
        stat_text = f"{test} statistic {_number(statistic, metric_type, test)}"
        if threshold is not None:
            stat_text += f" vs threshold {_number(threshold, metric_type, test)}"
        pieces.append(f"({stat_text})")
    effect_text = None
    effect = result.effect
    if effect is not None:
        effect_text = f"effect {_signed(effect, metric_type)}"
        interval = result.interval
        if interval and len(interval) == 2:
            effect_text += f" [{_signed(interval[0], metric_type)}, {_signed(interval[1], metric_type)}]"
        pieces.append(effect_text)
    has_numbers = len(pieces) > 1
    if not has_numbers:
        pieces.append(result.summary or "no observations")
    return MetricLine(name=name, test=test, action=result.action, text=" ".join(pieces),
                      canary=canary, baseline=baseline, effect=effect_text, has_numbers=has_numbers)


def _slo_side(result: MetricEvidence, metric_type: str | None) -> str:
    """The canary's SLO gate in numbers: ``12.3% (45 slow of 366) against the SLO's 1% gate``."""
    gate = result.params.slo
    if gate is None or not gate.trials:
        return ""
    bad, trials = float(gate.bad or 0), float(gate.trials)
    word = {"latency": "slow", "errorRate": "errors"}.get(metric_type or "", "bad")
    against = f" against the SLO's {100 * float(gate.limit):.3g}% gate"
    return f"{100 * bad / trials:.3g}% ({bad:.0f} {word} of {trials:.0f}){against}"


def _number(value: Any, metric_type: str | None, test: str) -> str:
    if not isinstance(value, int | float):
        return str(value)
    if test == "threshold":  # the threshold judge's statistic is the metric itself
        return format_value(float(value), metric_type)
    return f"{value:.4g}"


def _signed(value: Any, metric_type: str | None) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    if metric_type == "errorRate":
        return f"{value * 100:+.2f} pp"
    if metric_type == "latency":
        return f"{value:+.1f} ms"
    return f"{value:+.4g}"


def metric_types(record: RolloutRecord) -> dict[str, str]:
    analysis = record.spec.analysis()
    return {m.name: m.type for m in analysis.metrics} if analysis is not None else {}


def report_link(record: RolloutRecord) -> tuple[str | None, str]:
    """(URL from ``notify.reportUrl`` with ``{name}``/``{service}`` filled in, how to render it locally)."""
    hint = f"rollwise report {record.name} --format html --out {record.name}-postmortem.html"
    notify = record.spec.notify
    if notify is None or not notify.reportUrl:
        return None, hint
    url = notify.reportUrl.replace("{name}", record.name).replace("{service}", record.spec.service)
    return url, hint


NOTIFY_WAVES = ("start", "promoted", "held", "blackout", "approval")
"""The region-wave moves worth a message (a rollback is told by its phase event)."""


class NoticeBoard:
    """Picks the events worth a message and words them. One per notifier; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # rollout -> (revision of the commit it came in, decision event): lets the phase event that
        # ends a rollout carry the evidence of the decision committed with it.
        self._decisions: dict[str, tuple[int, Event]] = {}

    def notice(self, record: RolloutRecord, event: Event) -> Notice | None:
        if event.type == "decision":
            return self._decision(record, event)
        if event.type == "step":
            if event.data.get("kind") not in STAGE_STEP_KINDS:
                return None
            return self._stage(record, event)
        if event.type == "phase":
            try:
                phase = Phase(event.data.get("phase", ""))
            except ValueError:
                return None
            if phase not in NOTIFY_PHASES:
                return None
            return self._phase(record, event, phase)
        if event.type == "incident":  # the post-release watch opened an incident (watch/actions.py)
            culprit = event.data.get("culprit") or "no change"
            return self._build(record, event, "incident", f"{record.spec.service}: incident "
                               f"#{event.data.get('incident')} on {event.data.get('metric')}, culprit {culprit}",
                               evidence=Evidence())
        if event.type == "wave" and event.data.get("action") in NOTIFY_WAVES:  # a region wave moved or waits
            return self._build(record, event, "wave", f"{record.spec.service}: {event.message}",
                               evidence=evidence_of(event.data))
        if event.type == "command" and event.data.get("command") == "undo":
            return self._build(record, event, "undo", f"{record.spec.service}: {record.canary_version} undone, "
                               f"traffic back to {record.stable_version}", evidence=Evidence())
        return None

    def _decision(self, record: RolloutRecord, event: Event) -> Notice | None:
        decision = decision_of(event.data)
        action = decision.action or ""
        if action not in NOTIFY_DECISIONS:
            return None
        with self._lock:
            self._decisions[record.name] = (record.revision, event)
        # A decision is only taken while progressing; if the committed record left that phase, the
        # phase event of the same commit tells the story (with this decision's evidence).
        if record.phase != Phase.PROGRESSING:
            return None
        title = f"{record.spec.service}: {record.canary_version} {action} at {decision.weight or 0:g}%"
        return self._build(record, event, "decision", title, evidence=decision.evidence)

    def _stage(self, record: RolloutRecord, event: Event) -> Notice:
        data = event.data
        weight = data.get("weight")
        previous = data.get("previous_weight")
        service = record.spec.service
        if weight is not None and previous is not None:
            title = f"{service}: {record.canary_version} {previous:g}% → {weight:g}%"
        elif weight is not None:
            title = f"{service}: {record.canary_version} at {weight:g}%"
        else:
            title = f"{service}: {event.message}"
        return self._build(record, event, "stage", title, evidence=evidence_of(data),
                           weight=weight, previous_weight=previous)

    def _phase(self, record: RolloutRecord, event: Event, phase: Phase) -> Notice:
        evidence = evidence_of(event.data)
        with self._lock:
            remembered = self._decisions.get(record.name)
            if phase.terminal:
                self._decisions.pop(record.name, None)
        if remembered is not None and remembered[0] == record.revision and not evidence.metrics:
            # the decision's evidence, with whatever the phase event's own evidence says on top
            told = {name: getattr(evidence, name) for name in evidence.model_fields_set if getattr(evidence, name)}
            evidence = evidence_of(remembered[1].data).model_copy(update=told)
        service, canary = record.spec.service, record.canary_version
        kind, title = {
            Phase.SUCCEEDED: ("succeeded", f"{service}: {canary} released to 100%"),
            Phase.ROLLED_BACK: ("rolled-back", f"{service}: {canary} rolled back to {record.stable_version}"),
            Phase.ABORTED: ("aborted", f"{service}: {canary} aborted, traffic back on {record.stable_version}"),
            Phase.PAUSED: ("paused", f"{service}: {canary} paused, needs a human"),
        }[phase]
        return self._build(record, event, kind, title, evidence=evidence)

    def _build(self, record: RolloutRecord, event: Event, kind: str, title: str, evidence: Evidence,
               weight: float | None = None, previous_weight: float | None = None) -> Notice:
        types = metric_types(record)
        described = (describe_metric(m, types.get(m.metric)) for m in evidence.metrics)
        lines = tuple(line for line in described if line.has_numbers)
        decision = decision_of(event.data) if event.type == "decision" else None
        culprit_name = evidence.culprit or (decision.culprit if decision else None)
        culprit = None
        if culprit_name:
            culprit = next((line for line in lines if line.name == culprit_name), None)
        if culprit is None and kind in ("rolled-back", "aborted", "decision"):
            culprit = next((line for line in lines if line.action in NOTIFY_DECISIONS), None)
        decisive = culprit or (lines[0] if lines else None)
        rule = evidence.rule or (decision.rule if decision else None)
        why = None
        if decisive is not None:
            why = decisive.text + (f" — rule {rule}" if rule else "")
        url, hint = report_link(record)
        if weight is None and kind != "stage":
            weight = record.route.canary_weight
        summary = event.message
        return Notice(
            kind=kind, rollout=record.name, service=record.spec.service, stable=record.stable_version,
            canary=record.canary_version, title=title, summary=summary, event=event, weight=weight,
            previous_weight=previous_weight, stage=record.stage_index, region=record.spec.region, why=why,
            rule=str(rule) if rule else None, culprit=culprit, metrics=lines,
            report_url=url, report_hint=hint if kind in ("rolled-back", "aborted", "undo", "paused") else None,
        )


# ---------------------------------------------------------------- how it gets there


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one message to one channel."""

    channel: str
    rollout: str
    event_seq: int
    event_type: str
    status: str  # delivered | failed | dropped
    attempts: int
    response_code: int | None
    error: str | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeliveryRecorder(Protocol):
    def record(self, delivery: Delivery) -> None: ...


class DeliveryLog:
    """Every delivery outcome: the last ``keep`` in memory, all of them in ``path`` (JSONL) if given.

    ``store``: kept informed when it ``RecordsNotifications`` (a store backed by the ``notifications``
    table does). Failures to record are
    logged, never raised: bookkeeping must not break delivery either.
    """

    def __init__(self, path: str | Path | None = None, store: Any = None, keep: int = 1000):
        self.path = Path(path).expanduser() if path else None
        self.store = store
        self._recent: deque[Delivery] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def record(self, delivery: Delivery) -> None:
        with self._changed:
            self._recent.append(delivery)
            self._changed.notify_all()
            if self.path is not None:
                try:
                    self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    # Owner-only: the log names the channels and their answers.
                    with os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
                                   "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(delivery.to_dict()) + "\n")
                except OSError as exc:
                    log.warning("cannot append to delivery log %s: %s", self.path, exc)
        if isinstance(self.store, RecordsNotifications):
            try:
                self.store.record_notification(
                    rollout=delivery.rollout, event_seq=delivery.event_seq, channel=delivery.channel,
                    status=delivery.status, attempts=delivery.attempts,
                    response=json.dumps({"code": delivery.response_code, "error": delivery.error}), at=delivery.at)
            except Exception as exc:
                log.warning("store could not record a notification: %s", exc)

    def deliveries(self, channel: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._recent if channel is None or d.channel == channel]

    def wait_for(self, count: int, timeout: float) -> list[Delivery]:
        """Block until at least ``count`` outcomes are recorded (for tests and short-lived CLIs)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._recent) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return list(self._recent)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to ``base * 2**(n-1)``, capped."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    timeout_s: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        if retry_after is not None:
            return min(self.cap_s, max(retry_after, ceiling / 2))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    channel: str
    rollout: str
    event_seq: int
    event_type: str
    build: Callable[[], Request]  # called per attempt: signatures carry the attempt's timestamp


def _retryable(code: int) -> bool:
    return code in (408, 425, 429) or code >= 500


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


_live_senders: weakref.WeakSet[BackgroundSender] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """Give queued messages a short, bounded chance to leave before a CLI process exits."""
    deadline = time.monotonic() + 5.0
    for sender in list(_live_senders):
        sender.close(timeout=max(0.0, deadline - time.monotonic()))


class BackgroundSender:
    """One worker thread posting queued jobs in order, with retries; callers never wait on it.

    The queue is bounded: when a receiver is down for long enough to fill it, new messages are
    dropped (and recorded as ``dropped``) rather than growing memory without end.
    """

    def __init__(self, recorder: DeliveryRecorder, policy: RetryPolicy | None = None, max_queue: int = 500,
                 client: httpx.Client | None = None):
        self.recorder = recorder
        self.policy = policy or RetryPolicy()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._client = client
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
        _live_senders.add(self)

    def submit(self, job: Job) -> None:
        try:
            self._ensure_thread()
            self._queue.put_nowait(job)
        except queue.Full:
            self._record(job, "dropped", 0, None, "delivery queue full")
        except Exception as exc:  # never let bookkeeping reach the engine
            log.warning("could not queue a %s notification: %s", job.channel, exc)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job has an outcome; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop the thread."""
        self.flush(timeout)
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            thread.join(timeout=1.0)
        if self._client is not None:
            self._client.close()
            self._client = None

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="rollwise-notify", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._deliver(job)
            except Exception as exc:  # the worker must survive anything a job does
                log.warning("notification worker error: %s", exc)
            finally:
                self._queue.task_done()

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.policy.timeout_s, follow_redirects=False)
        return self._client

    def _deliver(self, job: Job) -> None:
        code: int | None = None
        error: str | None = None
        for attempt in range(1, self.policy.attempts + 1):
            retry_after = None
            try:
                request = job.build()
                response = self._http().post(request.url, content=request.body, headers=request.headers)
                code, error = response.status_code, None
                if 200 <= code < 300:
                    self._record(job, "delivered", attempt, code, None)
                    return
                error = response.text[:200] or f"HTTP {code}"
                if not _retryable(code):
                    break
                retry_after = _retry_after(response)
            except httpx.HTTPError as exc:
                code, error = None, f"{type(exc).__name__}: {exc}"[:200]
            if attempt < self.policy.attempts and self._stopping.wait(self.policy.delay(attempt, retry_after)):
                break  # closing: stop retrying
        self._record(job, "failed", attempt, code, error)
        log.warning("%s notification for %s #%d failed after %d attempts: %s", job.channel, job.rollout,
                    job.event_seq, attempt, error)

    def _record(self, job: Job, status: str, attempts: int, code: int | None, error: str | None) -> None:
        try:
            self.recorder.record(Delivery(channel=job.channel, rollout=job.rollout, event_seq=job.event_seq,
                                          event_type=job.event_type, status=status, attempts=attempts,
                                          response_code=code, error=error, at=time.time()))
        except Exception as exc:
            log.warning("could not record a delivery: %s", exc)


class WebhookNotifierBase:
    """The shared shape of a notifier: filter and word events, render for a channel, queue the post.

    Subclasses set ``channel`` and implement ``render(notice) -> dict`` and optionally ``headers``.
    ``notify`` follows the ``Notifier`` protocol: it never raises and never does network I/O.
    """

    channel = "webhook"

    def __init__(self, url: str, log: DeliveryLog | None = None, policy: RetryPolicy | None = None,
                 sender: BackgroundSender | None = None):
        self.url = url
        self.log = log or DeliveryLog()
        self.sender = sender or BackgroundSender(self.log, policy)
        self.board = NoticeBoard()

    def render(self, notice: Notice) -> dict[str, Any]:
        raise NotImplementedError

    def headers(self, body: bytes) -> dict[str, str]:
        return {}

    def notify(self, record: RolloutRecord, event: Event) -> None:
        try:
            notice = self.board.notice(record, event)
            if notice is None:
                return
            body = json.dumps(self.render(notice), ensure_ascii=False, separators=(",", ":")).encode()
        except Exception as exc:
            log.warning("could not word a %s notification for %s: %s", self.channel, record.name, exc)
            return

        def build() -> Request:
            return Request(self.url, body, {"Content-Type": "application/json", **self.headers(body)})

        self.sender.submit(Job(self.channel, record.name, event.seq, event.type, build))

    def flush(self, timeout: float = 10.0) -> bool:
        return self.sender.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.sender.close(timeout)


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def join_lines(lines: Sequence[str]) -> str:
    return "\n".join(line for line in lines if line)
