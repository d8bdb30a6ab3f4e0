"""The small protocols the engine drives. Adapters implement them; the core imports no adapter."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from rollwise.core.audit import ApiToken, AuditEntry, ChainReport
from rollwise.core.fleet import EnvoyNode
from rollwise.core.leases import ControllerSeen, Lease
from rollwise.core.model import (
    AppliedRoute,
    Event,
    RolloutHead,
    RolloutRecord,
    RouteState,
    StageContext,
    Verdict,
    VersionStats,
    Window,
    WindowQuery,
)
from rollwise.core.releases import PastEffect
from rollwise.learning.incident_memory import Remembered, Signature
from rollwise.spec.models import VersionRef
from rollwise.watch.changes import Change
from rollwise.watch.incidents import Incident


class TrafficRouter(Protocol):
    """Moves real (or simulated) requests. ``apply`` is declarative and idempotent."""

    def apply(self, rollout: str, route: RouteState) -> None:
        """Make the data plane match ``route``; raise if the data plane refused it."""
        ...


class RouteRejected(Exception):
    """The data plane refused the desired route, or could not confirm it; the previous state still serves.

    Routers raise it (or a subclass) with one line fit for the rollout's events and status: the engine
    keeps that line on the record (``RolloutRecord.route_error``), so a refused route is an error on the
    rollout a person sees, not only a line in a controller's log.
    """


class MetricsError(Exception):
    """A metrics backend failed to answer: unreachable, refused, or it rejected the query.

    Distinct from no data (a backend that answered with nothing): the engine marks the window as a
    backend error and reports it in status, events, ``explain`` and the dashboard. The message is
    one line naming the backend, its URL and the cause; it never carries a secret.
    """


class MetricSource(Protocol):
    def collect(self, query: WindowQuery) -> Window:
        """Observations of baseline and canary over the query's window (``None`` sides: no data).

        Raises ``MetricsError`` when the backend could not be read.
        """
        ...


@runtime_checkable
class BaselineHistory(Protocol):
    """A metric source that can also say how the stable version did before the rollout began."""

    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        """The stable version's stats over [query.start, query.end), before any canary traffic."""
        ...


class ReleaseHistory(Protocol):
    """What past releases measured (``core/releases.py``): written when a rollout ends, read when one begins."""

    def record_effects(self, effects: Sequence[PastEffect]) -> None:
        """Keep a finished rollout's effects (idempotent: the same rollout, run and metric once)."""
        ...

    def past_effects(self, metric_types: Sequence[str]) -> builtins.list[PastEffect]:
        """Every service's recent past effects of these metric kinds, newest last (bounded)."""
        ...


class IncidentMemory(Protocol):
    """Past rollbacks and incidents with their signatures and RCA embeddings (``learning/incident_memory.py``;
    ``adapters/memory/lancedb_incidents.py``, built by ``wiring.open_incident_memory``)."""

    def remember(self, signatures: Sequence[Signature]) -> None:
        """Keep (or replace, by id) signatures, in one write; their text is embedded later, by the first query."""
        ...

    def recall(self, ident: str) -> Signature | None: ...

    def remembered(self, model: str | None) -> builtins.list[Remembered]:
        """Every kept signature (the newest, bounded), each with its vector when ``model`` made it."""
        ...

    def unembedded(self, model: str) -> builtins.list[Signature]:
        """The signatures without a vector from ``model``."""
        ...

    def set_vectors(self, vectors: Mapping[str, Sequence[float]], model: str) -> None: ...


class TextEmbedder(Protocol):
    """A local sentence-embedding model (``adapters/memory/minilm.py``): unit vectors, same text same vector."""

    model: str

    def embed(self, texts: Sequence[str]) -> builtins.list[builtins.list[float]]: ...


class IncidentRecorder(Protocol):
    """What the engine (a rollout ended, after the end is committed) and the watch (an incident resolved)
    tell the incident memory (``report/similar.IncidentRecorder``). Never raises."""

    def rollout_ended(self, record: RolloutRecord, events: Sequence[Event]) -> None: ...

    def incident_resolved(self, incident: Incident) -> None: ...


class Judge(Protocol):
    def evaluate(self, context: StageContext) -> Verdict: ...


class Notifier(Protocol):
    def notify(self, record: RolloutRecord, event: Event) -> None:
        """Tell people. Must not raise: a failing notifier never blocks a rollout."""
        ...


class Deployer(Protocol):
    def ensure(self, rollout: str, version: VersionRef) -> str:
        """Make ``version`` run; return its address. Idempotent."""
        ...

    def stop(self, rollout: str, version: VersionRef) -> None: ...


@runtime_checkable
class BackgroundNotifier(Protocol):
    """A notifier that delivers from its own thread: ``flush`` waits for what is queued, ``close`` stops it."""

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification has an outcome; False on timeout."""
        ...

    def close(self, timeout: float = 5.0) -> None: ...


# ---------------------------------------------------------------- capabilities
# What only some adapters can do. Each has a name, and callers ask ``isinstance(x, Closeable)``
# (the protocols are runtime-checkable) rather than probing with ``getattr``, so mypy checks the call.


@runtime_checkable
class Closeable(Protocol):
    """Holds something to let go of when its owner stops: a process, a connection, a thread."""

    def close(self) -> None: ...


@runtime_checkable
class RolloutHeads(Protocol):
    """A store that lists its rollouts' heads without loading them (the SQL stores): the watch reads every
    rollout on each pass, and parsing 1,000 whole records for that cost a controller a second per pass."""

    def heads(self) -> builtins.list[RolloutHead]:
        """Every rollout's head, ordered as ``Store.list`` orders records (created, then name)."""
        ...


@runtime_checkable
class HasAdmin(Protocol):
    """A data plane with an admin API that serves its traffic counters (Envoy's), for a metric source."""

    @property
    def admin_url(self) -> str: ...


@runtime_checkable
class MirrorTargets(Protocol):
    """A router that can send a version's mirrored copies somewhere else (a response comparator)."""

    def register_mirror_target(self, rollout: str, version: str, address: str) -> None: ...


@runtime_checkable
class RecordsNotifications(Protocol):
    """A store that keeps every notifier delivery outcome beside the events it was about."""

    def record_notification(
        self, rollout: str, event_seq: int, channel: str, status: str, attempts: int, response: str | None,
        at: float,
    ) -> None: ...


class ConflictError(Exception):
    """Someone else changed the rollout since it was read; reload and try again."""


class NotFoundError(KeyError):
    pass


class StoreUnavailable(Exception):
    """The store cannot be opened: a refused connection, an unknown URL scheme, a file that is no database.

    The message is one line a person can act on, with any password in the URL hidden.
    """


class StoreMissing(StoreUnavailable):
    """A read-only command named a store that does not exist yet; it is left uncreated."""


StageWindow = tuple[int, Window]
"""One observation as stores keep it: the index of the stage it was taken in, and the window."""


class Store(Protocol):
    def create(self, record: RolloutRecord, events: Sequence[Event]) -> RolloutRecord:
        """Insert a new rollout; raises ``ConflictError`` if the name is taken by an active one."""
        ...

    def get(self, name: str) -> RolloutRecord:
        """Raises ``NotFoundError``."""
        ...

    def save(
        self, record: RolloutRecord, events: Sequence[Event] = (), windows: Sequence[StageWindow] = (),
        durable: bool = True,
    ) -> RolloutRecord:
        """Atomically store ``record`` (revision must match the stored one) with its new events
        and (stage, window) observations; returns the record with its revision bumped.

        ``durable=False`` (a tick that only took a window: no event, no route) lets a store acknowledge
        before the save reaches disk; a database crash may then lose it, and the next tick takes the
        same window again from the same cursor."""
        ...

    def list(self, active_only: bool = False) -> list[RolloutRecord]: ...

    def confirm_route(self, name: str, revision: int, at: float) -> None:
        """The data plane confirmed route ``revision`` of ``name`` (never moves backwards)."""
        ...

    def applied_route(self, name: str) -> AppliedRoute | None:
        """The last route the data plane confirmed for the current run, if any."""
        ...

    def due(self, now: float) -> builtins.list[str]:
        """Rollouts a runner must tick: not ended, their confirmed route behind the desired one,
        or an ended one whose versions are due to be stopped (``wake_at`` passed). One cheap query."""
        ...

    def events(self, name: str | None = None, since_seq: int = 0) -> builtins.list[Event]: ...

    def windows(self, name: str, stage: int | None = None) -> builtins.list[StageWindow]: ...

    def push_kpi(self, rollout: str, version: str, metric: str, value: float, at: float) -> None: ...

    def kpi_totals(self, rollout: str, version: str, start: float, end: float) -> dict[str, float]: ...


class Leases(Protocol):
    """Who acts on which rollout when several controllers share a store (see ``core/leases.py``).

    Implemented by ``adapters/stores/sql_leases.SqlLeases``; built by ``wiring.open_leases``.
    """

    def claim(self, holder: str, now: float, ttl: float) -> dict[str, int]:
        """One pass's leases for ``holder``: heartbeat, renew what it holds, hand back what is no longer
        due or beyond its fair share, take free or expired due rollouts up to that share; returns the
        rollouts it now holds with their fencing tokens."""
        ...

    def claim_watch(self, holder: str, services: Sequence[str], now: float, ttl: float) -> set[str]:
        """Which of the watched ``services`` ``holder`` watches after release this pass (one lease per
        service, shared out like ``claim``), so several controllers never open the same incident twice."""
        ...

    def release(self, holder: str) -> None:
        """Hand back every lease of ``holder`` (rollouts and watched services: a controller stopping
        cleanly), so others take over now."""
        ...

    def fenced(self, name: str, token: int) -> Store:
        """The store as the holder of ``name``'s lease with ``token`` sees it: reads and writes of
        ``name`` raise ``LeaseLost`` once a newer token exists."""
        ...

    def leases(self) -> builtins.list[Lease]: ...

    def controllers(self) -> builtins.list[ControllerSeen]: ...


class AuditLog(Protocol):
    """The append-only record of every write (and refused write): the control plane's memory of who did what.

    Implemented by ``adapters/stores/sql_audit.SqlAuditLog`` (a keyed hash chain); built by ``wiring.open_audit``.
    """

    @property
    def key(self) -> bytes:
        """The chain key, loaded (or created) on first use; raises ``AuditKeyError`` with a fix."""
        ...

    def append(self, *, actor: str, role: str, action: str, target: str, before: Any = None, after: Any = None,
               reason: str | None = None, at: float | None = None) -> AuditEntry: ...

    def entries(self, target: str | None = None, limit: int | None = None, after_id: int = 0,
                newest_first: bool = False) -> builtins.list[AuditEntry]: ...

    def head(self) -> tuple[int, str] | None:
        """(id, hash) of the newest row, to export and check later with ``verify(anchor)``."""
        ...

    def verify(self, anchor: tuple[int, str] | None = None) -> ChainReport: ...


class TokenRepository(Protocol):
    """API tokens with roles; the secret is shown once at creation and never stored."""

    def create(self, name: str, role: str) -> tuple[ApiToken, str]:
        """The new token and its secret; raises ``TokenError`` naming the field."""
        ...

    def list(self, include_revoked: bool = True) -> builtins.list[ApiToken]: ...

    def get(self, token_id: int) -> ApiToken | None: ...

    def revoke(self, token_id: int) -> ApiToken: ...

    def any_exist(self) -> bool:
        """True once any token was ever created (revoked ones count: the API never reopens)."""
        ...

    def resolve(self, presented: str) -> ApiToken | None: ...


class BridgeSessions(Protocol):
    """What a controller's analysis (an Argo run, a Flagger canary) was judged on so far (``rollwise.bridges``)."""

    def load(self, key: str) -> tuple[dict[str, Any] | None, int]:
        """The session's JSON state and its revision (``None, 0``: no such session)."""
        ...

    def save(self, key: str, state: dict[str, Any], at: float, revision: int) -> bool:
        """Store ``state`` if the session is still at ``revision``; False when another call was first."""
        ...

    def prune(self, before: float) -> int:
        """Forget sessions idle since before ``before``."""
        ...


class WatchStore(Protocol):
    """The watch's memory: the change log and incidents (``adapters/stores/sql_watch.SqlWatchStore``,
    built by ``wiring.open_watch``). The log merges recorded changes with the rollouts' own, derived from
    their events."""

    def record_change(self, change: Change) -> Change:
        """Store a change; returns it with its id."""

    def changes(self, service: str | None = None, since: float | None = None,
                until: float | None = None) -> builtins.list[Change]:
        """The service's changes (changes to every service included), oldest first."""

    def open_incident(self, incident: Incident) -> Incident:
        """Store a new incident and return it with its id; at most one is open per service: if one
        is, raise ``watch.incidents.IncidentAlreadyOpen`` carrying it."""

    def save_incident(self, incident: Incident) -> None: ...

    def incidents(self, service: str | None = None, open_only: bool = False,
                  since: float | None = None) -> builtins.list[Incident]: ...

    def incident(self, incident_id: int) -> Incident | None: ...


@runtime_checkable
class EnvoyFleet(Protocol):
    """The Envoys of an ADS fleet and what each accepted, kept in the store (``core/fleet.py``)."""

    def record_nodes(self, nodes: Sequence[EnvoyNode]) -> None:
        """Insert or replace these nodes' rows (their streams' state as their ADS server sees it), at once."""
        ...

    def heartbeat(self, server: str, node_ids: Sequence[str], at: float) -> None:
        """The server still holds these nodes' streams."""
        ...

    def nodes(self) -> builtins.list[EnvoyNode]: ...

    def acked_clusters(self, node_id: str) -> dict[str, Any] | None:
        """The clusters the node last ACKed, as its server recorded them (``EnvoyNode.acked_clusters``)."""
        ...

    def route_marks(self) -> dict[str, int]:
        """The record revision of every rollout that may use the ADS fleet (cheap): what changed since the last look."""
        ...
