"""One ``Notifier`` that forwards each event to several: the process-wide channels (from the
environment) plus the channels a rollout's own spec names under ``notify``.

A controller drives many rollouts with one ``Runtime.notifier``, but each spec may name its own
Slack/Teams/webhook URLs, so per-spec notifiers are built on first use by a factory the composition
root supplies (this module imports no other adapter) and cached by their configuration, which keeps
one background worker and one retry queue per destination.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence

from rollwise.core.model import Event, RolloutRecord
from rollwise.core.protocols import BackgroundNotifier, Notifier

log = logging.getLogger("rollwise.notify")

# (record) -> [(cache key, factory)] for the channels that record's spec asks for.
SpecChannels = Callable[[RolloutRecord], Sequence[tuple[Hashable, Callable[[], Notifier]]]]


class FanoutNotifier:
    def __init__(self, notifiers: Sequence[Notifier] = (), for_spec: SpecChannels | None = None):
        self.notifiers = list(notifiers)
        self.for_spec = for_spec
        self._per_spec: dict[Hashable, Notifier] = {}
        self._lock = threading.Lock()

    def _targets(self, record: RolloutRecord) -> list[Notifier]:
        targets = list(self.notifiers)
        if self.for_spec is None:
            return targets
        for key, build in self.for_spec(record):
            with self._lock:
                notifier = self._per_spec.get(key)
                if notifier is None:
                    notifier = self._per_spec[key] = build()
            targets.append(notifier)
        return targets

    def notify(self, record: RolloutRecord, event: Event) -> None:
        try:
            targets = self._targets(record)
        except Exception as exc:
            log.warning("could not set up notifiers for %s: %s", record.name, exc)
            targets = list(self.notifiers)
        for notifier in targets:
            try:
                notifier.notify(record, event)
            except Exception as exc:  # the protocol says must not raise; enforce it for every member
                log.warning("notifier %s failed: %s", type(notifier).__name__, exc)

    def all(self) -> list[Notifier]:
        with self._lock:
            return [*self.notifiers, *self._per_spec.values()]

    def flush(self, timeout: float = 10.0) -> bool:
        ok = True
        for notifier in self.all():
            if isinstance(notifier, BackgroundNotifier):
                ok = bool(notifier.flush(timeout)) and ok
        return ok

    def close(self, timeout: float = 5.0) -> None:
        for notifier in self.all():
            if isinstance(notifier, BackgroundNotifier):
                try:
                    notifier.close(timeout)
                except Exception as exc:
                    log.warning("closing notifier %s failed: %s", type(notifier).__name__, exc)
