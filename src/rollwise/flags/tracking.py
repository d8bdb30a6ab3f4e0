"""Experiment data from an application: exposures from an OpenFeature hook, metric events from ``track``.

An experiment's readout joins exposures (who saw which variant) and metric events (what they did) by subject
in rollwise's store. An application that evaluates flags in-process with ``RollwiseProvider`` produces both:
every evaluation of an experiment's flag is an exposure (``ExposureHook``, an OpenFeature *after* hook), and
OpenFeature's tracking API (``client.track("purchase", context, TrackingEventDetails(value=…))``) is a metric
event. ``ExperimentTracker`` sends them to ``rollwise serve`` through the same endpoints the CLI uses
(``POST /api/v1/experiments/<name>/exposures``, ``POST /api/v1/metric-events``).

Use::

    tracker = ExperimentTracker("http://rollwise:8080", deployer_token)
    api.set_provider(RollwiseProvider("flags.json", tracker=tracker))
    client = api.get_client()
    who = EvaluationContext(targeting_key=user_id)
    client.get_boolean_value("new-checkout", False, who)        # an exposure, if an experiment runs on it
    client.track("purchase", who, TrackingEventDetails(value=42.0))  # a metric event
    api.shutdown()                                                # sends what is still buffered

Why it is shaped like this:

* One HTTP request per evaluation would cost far more than the evaluation, so nothing is sent on the
  caller's thread: items are appended to a buffer and a background thread sends them in batches (every
  ``flush_interval`` seconds, or sooner once ``batch_size`` items wait). ``flush()`` sends now; ``close()``
  (the provider's ``shutdown``) sends what is left.
* The hook does not know which experiments run on a flag; the sender does. It reads the experiments from
  the server (``GET /api/v1/experiments``, refreshed every ``refresh_interval`` s or when a flag it has not
  seen appears) and turns each (flag, subject, variant) into an exposure of every running experiment on that
  flag whose variants include it. A subject already sent for an experiment is not sent again (the server keeps
  the first exposure anyway); that memory is bounded.
* The server refuses a whole batch for one bad item, so items are checked here with the server's rules and a
  bad one is dropped (counted in ``dropped``) instead of poisoning its batch. A batch the server still refuses
  (4xx: e.g. a token without the deployer role) is dropped and its reason kept in ``last_error``; a batch that
  could not be delivered (connection error, 5xx) is kept for the next flush. The buffer is bounded
  (``max_pending``): beyond it the oldest items are dropped and counted.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagValueType
from openfeature.hook import Hook, HookContext, HookHints

from rollwise.experiments.model import EVENT
from rollwise.experiments.service import MAX_BATCH, SUBJECT


@dataclass
class _Running:
    name: str
    variants: frozenset[str]


@dataclass
class TrackerStats:
    """What the tracker did, for an application's own metrics and for tests."""

    exposures_sent: int = 0
    events_sent: int = 0
    dropped: int = 0
    requests: int = 0
    last_error: str | None = None
    by_reason: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped += count
        self.by_reason[reason] = self.by_reason.get(reason, 0) + count


class ExperimentTracker:
    """Batches exposures and metric events to ``rollwise serve`` (see the module docstring)."""

    def __init__(self, server: str, token: str, *, batch_size: int = 5_000, flush_interval: float = 1.0,
                 max_pending: int = 200_000, refresh_interval: float = 30.0, remember: int = 100_000,
                 clock: Callable[[], float] = time.time, background: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size: between 1 and {MAX_BATCH:,}")
        self._http = httpx.Client(base_url=server.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                  timeout=30.0, transport=transport)
        self.batch_size, self.flush_interval, self.max_pending = batch_size, flush_interval, max_pending
        self.refresh_interval, self._remember, self._clock = refresh_interval, remember, clock
        self.stats = TrackerStats()
        self._lock = threading.Lock()  # guards the buffers and stats
        self._sending = threading.Lock()  # one flush at a time
        self._exposures: list[tuple[str, str, str, float]] = []  # (flag, subject, variant, at)
        self._events: list[dict[str, Any]] = []
        self._running: dict[str, list[_Running]] = {}
        self._refreshed = -math.inf
        self._sent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._loop, name="rollwise-experiment-tracker", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ what the hook and the provider call

    def exposure(self, flag: str, subject: str | None, variant: str | None, at: float | None = None) -> bool:
        """Note that ``subject`` saw ``variant`` of ``flag``; False (and counted) when it cannot be analysed."""
        if subject is None or not SUBJECT.match(subject):
            self._count_drop("exposure without a valid targeting key")
            return False
        if variant is None:
            return False
        self._add(self._exposures, (flag, subject, variant, self._clock() if at is None else at))
        return True

    def event(self, subject: str | None, event: str, value: float | None = 1.0, at: float | None = None) -> bool:
        """A metric event (``value`` defaults to 1: a conversion); False (and counted) when the server would
        refuse it."""
        value = 1.0 if value is None else value
        if subject is None or not SUBJECT.match(subject):
            reason = "event without a valid targeting key"
        elif not EVENT.match(event):
            reason = "event name not 1-128 of A-Z a-z 0-9 _ . : -"
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            reason = "event value not a finite number"
        else:
            item = {"subject": subject, "event": event, "value": float(value),
                    "at": self._clock() if at is None else at}
            self._add(self._events, item)
            return True
        self._count_drop(reason)
        return False

    def _add(self, buffer: list[Any], item: Any) -> None:
        with self._lock:
            buffer.append(item)
            if len(buffer) > self.max_pending:
                del buffer[0]
                self.stats.drop("buffer full")
            if len(buffer) >= self.batch_size:
                self._wake.set()

    def pending(self) -> tuple[int, int]:
        """(exposures, metric events) waiting to be sent."""
        with self._lock:
            return len(self._exposures), len(self._events)

    def _count_drop(self, reason: str) -> None:
        with self._lock:
            self.stats.drop(reason)

    # ------------------------------------------------------------ sending

    def flush(self) -> None:
        """Send everything buffered now (exposures first, so an event's subject is exposed when it lands)."""
        with self._sending:
            with self._lock:
                exposures, self._exposures = self._exposures, []
                events, self._events = self._events, []
            if exposures:
                self._send_exposures(exposures)
            for start in range(0, len(events), self.batch_size):
                chunk = events[start:start + self.batch_size]
                outcome = self._post("/api/v1/metric-events", chunk)
                if outcome == "sent":
                    self.stats.events_sent += len(chunk)
                elif outcome == "failed":  # keep the rest, in order, ahead of newer events
                    self._put_back(events[start:])
                    break

    def _send_exposures(self, exposures: list[tuple[str, str, str, float]]) -> None:
        if any(flag not in self._running for flag, *_ in exposures) or \
                self._clock() - self._refreshed > self.refresh_interval:
            self._refresh()
        by_experiment: dict[str, list[dict[str, Any]]] = {}
        for flag, subject, variant, at in exposures:
            for experiment in self._running.get(flag, []):
                if variant not in experiment.variants or (experiment.name, subject) in self._sent:
                    continue
                by_experiment.setdefault(experiment.name, []).append({"subject": subject, "variant": variant,
                                                                      "at": at})
                self._remember_sent(experiment.name, subject)
        for name, items in by_experiment.items():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                outcome = self._post(f"/api/v1/experiments/{name}/exposures", chunk)
                if outcome == "sent":
                    self.stats.exposures_sent += len(chunk)
                elif outcome == "failed":  # forget they were sent: the next evaluation sends them again
                    for item in chunk:
                        self._sent.pop((name, item["subject"]), None)

    def _remember_sent(self, name: str, subject: str) -> None:
        self._sent[(name, subject)] = None
        if len(self._sent) > self._remember:
            self._sent.popitem(last=False)

    def _refresh(self) -> None:
        """The running experiments per flag, from the server (kept as they were if it cannot be read)."""
        try:
            response = self._http.get("/api/v1/experiments")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.stats.last_error = f"GET /api/v1/experiments: {_why(exc)}"
            return
        running: dict[str, list[_Running]] = {}
        for item in response.json():
            spec = item.get("spec", {})
            if item.get("status") == "running" and spec.get("flag"):
                running.setdefault(spec["flag"], []).append(_Running(item["name"], frozenset(spec["variants"])))
        self._running, self._refreshed = running, self._clock()

    def _post(self, path: str, items: list[dict[str, Any]]) -> str:
        """POST one batch: "sent"; "refused" (4xx: dropped, counted); "failed" (not delivered: the caller keeps
        it)."""
        self.stats.requests += 1
        try:
            response = self._http.post(path, json=items)
        except httpx.HTTPError as exc:
            self.stats.last_error = f"POST {path}: {_why(exc)}"
            return "failed"
        if response.is_success:
            return "sent"
        self.stats.last_error = f"POST {path}: {response.status_code} {response.text[:200]}"
        if response.status_code >= 500:
            return "failed"
        with self._lock:
            self.stats.drop(f"refused by the server ({response.status_code})", len(items))
        return "refused"

    def _put_back(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._events[:0] = events
            overflow = len(self._events) - self.max_pending
            if overflow > 0:
                del self._events[:overflow]
                self.stats.drop("buffer full", overflow)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # the sender must outlive one bad flush
                self.stats.last_error = f"flush: {exc}"

    def close(self) -> None:
        """Stop the background sender and send what is left (once)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()
        self._http.close()


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class ExposureHook(Hook):
    """OpenFeature *after* hook: every successful evaluation is a candidate exposure; the tracker keeps the
    ones of flags that a running experiment is on (see the module docstring)."""

    def __init__(self, tracker: ExperimentTracker) -> None:
        self.tracker = tracker

    def after(self, hook_context: HookContext, details: FlagEvaluationDetails[FlagValueType],
              hints: HookHints) -> None:
        if details.error_code is not None or details.variant is None:
            return
        self.tracker.exposure(hook_context.flag_key, hook_context.evaluation_context.targeting_key, details.variant)
