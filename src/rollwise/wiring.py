"""The composition root: turns a spec's choices into concrete adapters.

This is the one place that knows every adapter. The core only sees protocols, and adapters
never see each other; the controller, CLI and API ask this module for what a spec needs.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollwise.adapters.repos.git import GitRepository
from rollwise.adapters.repos.git import RepositoryError as RepositoryError  # what change_source's raise
from rollwise.core.protocols import (
    AuditLog,
    BridgeSessions,
    Closeable,
    Deployer,
    EnvoyFleet,
    HasAdmin,
    IncidentMemory,
    IncidentRecorder,
    Leases,
    MetricSource,
    Notifier,
    ReleaseHistory,
    Store,
    StoreUnavailable,
    TextEmbedder,
    TokenRepository,
    TrafficRouter,
    WatchStore,
)
from rollwise.core.pushed_kpis import with_pushed_kpis
from rollwise.learning.features import ChangeSource
from rollwise.spec.models import RESPONSE_COMPARISONS, AgentEndpointSpec, EvaluationSpec, RolloutSpec

if TYPE_CHECKING:
    from rollwise.adapters.metrics.prometheus import PrometheusMetricSource
    from rollwise.adapters.xds.server import AdsServer
    from rollwise.agents.memory import MemoryStore
    from rollwise.agents.protocols import AgentEndpoint
    from rollwise.agents.source import RunnerFactory
    from rollwise.core.clock import Clock
    from rollwise.core.engine import RolloutEngine
    from rollwise.core.model import RolloutRecord
    from rollwise.flags.repository import SharedFlags
    from rollwise.learning.incident_memory import Retrieval, Signature
    from rollwise.simulate.world import SimulatedWorld
    from rollwise.telemetry.aggregate import SpanAggregates
    from rollwise.watch.runner import Watch


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """The store at ``url``, ``ROLLWISE_STORE``, or SQLite under ~/.rollwise; ``memory://`` for none.

    Raises ``StoreUnavailable`` (one line) when it cannot be opened, and ``StoreMissing`` instead of
    creating it when ``create`` is false (read-only commands).
    """
    if url == "memory://":
        from rollwise.adapters.stores.memory import MemoryStore

        return MemoryStore()
    from rollwise.adapters.stores.sql import SqlStore, default_store_url

    return SqlStore(url or default_store_url(), create=create)


def open_store_for_reading(url: str | None = None) -> Store:
    """The store if it exists, else an empty ``MissingStore`` that says so: reading never creates a store.

    ``rollout list``, ``status``, ``history``, ``explain``, ``report`` and ``metrics`` use this, so
    asking about a store that is not there leaves no file (nor ``~/.rollwise``) behind.
    """
    from rollwise.core.memory_store import MissingStore
    from rollwise.core.protocols import StoreMissing

    try:
        return open_store(url, create=False)
    except StoreMissing as exc:
        return MissingStore(str(exc))


def open_audit(store: Store) -> tuple[AuditLog, TokenRepository]:
    """The audit log and API tokens kept in ``store``'s database (a private in-memory one for other stores)."""
    from rollwise.adapters.stores.sql_audit import SqlAuditLog, SqlTokenRepository

    audit = SqlAuditLog(store)
    return audit, SqlTokenRepository(store, audit.database)


def open_bridge_sessions(store: Store) -> BridgeSessions:
    """Where Argo/Flagger analysis sessions accumulate: ``store``'s database (``rollwise.bridges``)."""
    from rollwise.adapters.stores.sql_bridges import SqlBridgeSessions

    return SqlBridgeSessions(store)


def bridge_metrics(prometheus_url: str, queries: dict[str, str]) -> PrometheusMetricSource:
    """Prometheus read for a bridge call: PromQL templates whose ``{version}`` (and ``{cluster}``) is the
    version the controller named, read right away (the controller chose when to ask)."""
    from rollwise.adapters.metrics.prometheus import PrometheusMetricSource

    return PrometheusMetricSource(prometheus_url, queries=queries, settle_s=0.0,
                                  cluster_name=lambda _rollout, version: version)


def open_experiments(store: Store) -> Any:
    """The experiments kept in ``store``'s database (``ExperimentRepository``); SQL stores only."""
    from rollwise.adapters.stores.sql import SqlStore
    from rollwise.adapters.stores.sql_experiments import SqlExperimentStore

    if not isinstance(store, SqlStore):
        raise StoreUnavailable("experiments need a SQL store (sqlite:///… or postgresql+psycopg://…)")
    return SqlExperimentStore(store)


def open_watch(store: Store) -> WatchStore:
    """The change log and incidents kept in ``store``'s database (a private in-memory one for other stores)."""
    from rollwise.adapters.stores.sql_watch import SqlWatchStore

    return SqlWatchStore(store)


def build_watch(store: Store, runtime: Runtime, audit: AuditLog, flags: Any = None,
                clock: Clock | None = None) -> Watch:
    """The post-release watch over ``store``'s services: the judge's metric sources (``runtime``), undo
    through a control plane audited in ``audit``, kills on ``flags`` (a served flag file, if any)."""
    from rollwise.control.plane import ControlPlane
    from rollwise.core.clock import SystemClock
    from rollwise.watch.actions import PlaneActuator
    from rollwise.watch.runner import Watch

    watch = open_watch(store)
    actuator = PlaneActuator(ControlPlane(store=store, audit=audit), watch, runtime.notifier, flags)
    return Watch(store, watch, lambda record: runtime.metrics_for(record.spec), actuator, clock or SystemClock(),
                 audit, processes=_processes(runtime), prometheus_for=_watch_prometheus(),
                 incidents=incident_recorder(store))


def _processes(runtime: Runtime) -> Any:
    """CPU and memory of the versions ``runtime``'s deployer started (it knows their PIDs; other processes
    are someone else's and are not read)."""
    from rollwise.adapters.metrics.process import ProcfsProcesses

    def pid_of(rollout: str, version: str) -> int | None:
        pid = getattr(runtime.deployer, "pid", None)
        return pid(rollout, version) if callable(pid) else None

    return ProcfsProcesses(pid_of)


def _watch_prometheus() -> Callable[[RolloutRecord], Any]:
    """The Prometheus at each spec's ``metrics.prometheusUrl``, for its ``watch.series`` (one client per URL)."""
    from rollwise.adapters.metrics.prometheus import PrometheusMetricSource

    clients: dict[str, PrometheusMetricSource] = {}

    def prometheus_for(record: RolloutRecord) -> PrometheusMetricSource:
        url = record.spec.metrics.prometheusUrl
        if url not in clients:
            clients[url] = PrometheusMetricSource(url)
        return clients[url]

    return prometheus_for


INCIDENT_MEMORY_ENV = "ROLLWISE_INCIDENT_MEMORY"


def incident_memory_folder(store: Store) -> Path | None:
    """Where past rollbacks and incidents are kept: ``ROLLWISE_INCIDENT_MEMORY`` (``off``: nowhere), else a
    folder beside a SQLite store (``r.db`` → ``r-incidents/``); a PostgreSQL store needs the variable."""
    from rollwise.adapters.stores.sql import SqlStore, sqlite_path
    from rollwise.adapters.stores.sql_leases import FencedStore

    configured = os.environ.get(INCIDENT_MEMORY_ENV, "").strip()
    if configured:
        return None if configured.lower() in ("off", "none", "0") else Path(configured).expanduser()
    base = store.store if isinstance(store, FencedStore) else store
    path = sqlite_path(base.url) if isinstance(base, SqlStore) else None
    return None if path is None else path.with_name(f"{path.stem}-incidents")


def open_incident_memory(store: Store) -> IncidentMemory:
    """The incident memory beside ``store`` (LanceDB). Raises ``IncidentMemoryUnavailable`` (one line)."""
    from rollwise.adapters.memory.lancedb_incidents import LanceIncidentMemory
    from rollwise.learning.incident_memory import IncidentMemoryUnavailable

    folder = incident_memory_folder(store)
    if folder is None:
        raise IncidentMemoryUnavailable(f"no folder for the incident memory: set {INCIDENT_MEMORY_ENV}")
    return LanceIncidentMemory(folder)


def incident_embedder() -> TextEmbedder | None:
    """The RCA text's embedding model when the ``memory`` extra is installed (``ROLLWISE_EMBEDDING=off``: none)."""
    from rollwise.adapters.memory import minilm

    if os.environ.get("ROLLWISE_EMBEDDING", "").strip().lower() in ("off", "none", "0") or not minilm.available():
        return None
    return minilm.MiniLmEmbedder()


def similar_incidents(store: Store, query: Signature, k: int = 3) -> Retrieval:
    """The ``k`` past rollbacks and incidents most like ``query``: from the incident memory (the store's
    ones it lacks added first), hybrid when the embedding model is installed; without LanceDB, signature
    only over the store's own rollbacks and incidents, and the retrieval says so."""
    from rollwise.learning.incident_memory import IncidentMemoryUnavailable, InMemoryIncidents
    from rollwise.report.similar import backfill, similar_to

    watch = open_watch(store)
    memory: IncidentMemory
    try:
        memory, missing = open_incident_memory(store), None
    except IncidentMemoryUnavailable as exc:
        memory, missing = InMemoryIncidents(), str(exc)
    backfill(store, watch, memory)
    retrieval = similar_to(memory, incident_embedder() if missing is None else None, query, k)
    if missing is not None:
        retrieval = replace(retrieval, note=f"signature only, over this store's rollbacks and incidents ({missing})")
    return retrieval


def incident_recorder(store: Store) -> IncidentRecorder | None:
    """What keeps each rollback's and resolved incident's signature (None without a folder for it or LanceDB:
    ``rollwise incidents similar`` then reads the store's own rollbacks, signature only)."""
    from rollwise.adapters.memory import lancedb_incidents
    from rollwise.report.similar import IncidentRecorder as Recorder

    if incident_memory_folder(store) is None or not lancedb_incidents.available():
        return None
    return Recorder(store, lambda: open_incident_memory(store))


def open_releases(store: Store) -> ReleaseHistory | None:
    """Past releases' effects kept beside ``store`` (SQL stores only; others learn nothing across runs)."""
    from rollwise.adapters.stores.sql import SqlStore
    from rollwise.adapters.stores.sql_learning import SqlReleaseHistory

    return SqlReleaseHistory(store) if isinstance(store, SqlStore) else None


def open_leases(store: Store) -> Leases | None:
    """Rollout leases kept in ``store``'s database, so several controllers can share it; None for a
    store that keeps none (in memory: one process)."""
    from rollwise.adapters.stores.sql import SqlStore

    if not isinstance(store, SqlStore):
        return None
    from rollwise.adapters.stores.sql_leases import SqlLeases

    return SqlLeases(store)


def open_shared_flags(store: Store, flags_path: str | Path) -> SharedFlags | None:
    """The flag document a fleet of flag servers shares in a PostgreSQL store, named by the flag file's
    name; None for other stores (one machine's servers already share the file itself)."""
    from rollwise.adapters.stores.sql import SqlStore

    if not isinstance(store, SqlStore) or store.engine.dialect.name != "postgresql":
        return None
    from rollwise.adapters.stores.sql_flags import SqlSharedFlags

    return SqlSharedFlags(store, Path(flags_path).name)


def open_fleet(store: Store) -> EnvoyFleet | None:
    """The Envoys of an ADS fleet kept in ``store``'s database; None for a store that keeps none (in memory)."""
    from rollwise.adapters.stores.sql import SqlStore

    if not isinstance(store, SqlStore):
        return None
    from rollwise.adapters.stores.sql_fleet import SqlEnvoyFleet

    return SqlEnvoyFleet(store)


def start_ads(store: Store, listen: str, runtime: Runtime | None = None) -> AdsServer:
    """Serve the store's ``envoy-ads`` routes over ADS on ``listen`` (host:port); the routers of ``runtime``
    (same process) poke it on each apply. Raises ``StoreUnavailable`` for a store that keeps no fleet and
    ``AdsError`` (one line) when it cannot listen."""
    from rollwise.adapters.xds.server import AdsServer

    fleet = open_fleet(store)
    if fleet is None:
        raise StoreUnavailable("an ADS fleet needs a SQL store (sqlite:///… or postgresql+psycopg://…)")
    server = AdsServer(store, fleet, listen).start()
    if runtime is not None:
        runtime.ads_pokes.append(server.poke)
    return server


NOTIFY_ENV = {
    "slack": "ROLLWISE_SLACK_WEBHOOK_URL",
    "teams": "ROLLWISE_TEAMS_WEBHOOK_URL",
    "webhook": "ROLLWISE_WEBHOOK_URL",
}


def build_notifier(env: Any = None, log_path: str | Path | None = None, store: Store | None = None) -> Notifier:
    """Every channel the environment names, plus the ones each rollout's ``spec.notify`` names.

    Env: ROLLWISE_SLACK_WEBHOOK_URL, ROLLWISE_TEAMS_WEBHOOK_URL, ROLLWISE_WEBHOOK_URL (signed with
    ROLLWISE_WEBHOOK_SECRET). Delivery outcomes go to ROLLWISE_NOTIFY_LOG (JSONL) or
    ``~/.rollwise/notifications.jsonl``. With nothing configured the notifier does nothing.
    """
    from rollwise.adapters.notifiers.delivery import DeliveryLog
    from rollwise.adapters.notifiers.fanout import FanoutNotifier

    env = os.environ if env is None else env
    path = log_path or env.get("ROLLWISE_NOTIFY_LOG") or Path("~/.rollwise/notifications.jsonl").expanduser()
    delivery_log = DeliveryLog(path, store=store)
    secret = env.get("ROLLWISE_WEBHOOK_SECRET") or None

    def make(channel: str, url: str, secret: str | None = None) -> Notifier:
        if channel == "slack":
            from rollwise.adapters.notifiers.slack import SlackNotifier

            return SlackNotifier(url, log=delivery_log)
        if channel == "teams":
            from rollwise.adapters.notifiers.teams import TeamsNotifier

            return TeamsNotifier(url, log=delivery_log)
        from rollwise.adapters.notifiers.webhook import WebhookNotifier

        return WebhookNotifier(url, secret=secret, log=delivery_log)

    static = {(channel, env[var]): make(channel, env[var], secret)
              for channel, var in NOTIFY_ENV.items() if env.get(var)}

    def for_spec(record: Any) -> list[tuple[Any, Any]]:
        notify = record.spec.notify
        if notify is None:
            return []
        resolve = notify_secrets(notify, env)
        wanted = [("slack", resolve("slack"), None), ("teams", resolve("teams"), None),
                  ("webhook", resolve("webhook"), resolve("webhookSecret") or secret)]
        return [((channel, url, key), lambda c=channel, u=url, k=key: make(c, u, k))
                for channel, url, key in wanted if url and (channel, url) not in static]

    return FanoutNotifier(list(static.values()), for_spec=for_spec)


def notify_secrets(notify: Any, env: Any) -> Any:
    """``resolve(field)``: a notify field's literal value, or the environment variable its ``<field>Env`` names."""

    def resolve(key: str) -> str | None:
        literal: str | None = getattr(notify, key)
        if literal:
            return literal
        name = getattr(notify, f"{key}Env")
        return (env.get(name) or None) if name else None

    return resolve


@dataclass
class Runtime:
    """The adapters one controller process uses, shared across the rollouts it drives.

    ``compare_mirrors`` puts a response comparator (comparing all it can) behind every mirror, not only
    a shadow's (whose spec says what to compare): the demo shows a blue/green preview compared too.
    """

    workdir: Path = field(default_factory=lambda: Path("~/.rollwise").expanduser())
    routers: dict[str, Any] = field(default_factory=dict)
    deployer: Deployer | None = None
    store: Store | None = None  # for sources that read what applications pushed
    notifier: Notifier | None = None  # built from the environment (and closed by ``close``) when not given
    compare_mirrors: bool = False
    telemetry: SpanAggregates | None = None  # what `rollwise serve` received over OTLP, for `metrics.source: otlp`
    ads_pokes: list[Callable[[], None]] = field(default_factory=list)  # ADS servers in this process
    _owns_notifier: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.workdir.exists():  # routes, logs, Envoy's files: readable by the owner only
            self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.notifier is None:
            self.notifier = build_notifier(store=self.store)
            self._owns_notifier = True

    def engine_for(self, spec: RolloutSpec, store: Store, clock: Clock) -> RolloutEngine:
        """An engine for ``spec``: the built-in judges and the adapters the spec names."""
        from rollwise.analysis import judge_for
        from rollwise.core.engine import RolloutEngine

        return RolloutEngine(
            store=store,
            clock=clock,
            judges=judge_for,
            router=self.engine_router(spec, store, clock),
            metrics=self.metrics_for(spec),
            notifier=self.notifier,
            deployer=self.deployer_for(spec),
            releases=open_releases(store),
            incidents=incident_recorder(store),
        )

    def engine_router(self, spec: RolloutSpec, store: Store, clock: Clock) -> TrafficRouter | None:
        """The router an engine drives: ``router_for(spec)``, with the agent's memory kept in step when the
        spec has one (one wrapper per rollout, so the controller keeps its engine between ticks)."""
        router = self.router_for(spec)
        if spec.memory is None or router is None:
            return router
        # Not keyed by the store: a controller's lease-fenced store reads the same rollout as its plain one.
        key = f"memory:{spec.name}:{spec.memory.model_dump_json()}:{id(router)}"
        if key not in self.routers:
            self.routers[key] = with_memory(spec, router, store, clock)
        return self.routers[key]  # type: ignore[no-any-return]

    def router_for(self, spec: RolloutSpec) -> TrafficRouter | None:
        traffic = spec.traffic
        if traffic.router == "none":
            return None
        if traffic.router == "file":
            from rollwise.adapters.routers.file import FileRouter

            path = traffic.path or str(self.workdir / "routes" / f"{spec.name}.json")
            key = f"file:{path}"
            if key not in self.routers:
                self.routers[key] = FileRouter(path)
            return self.routers[key]  # type: ignore[no-any-return]
        if traffic.router == "flag":
            from rollwise.adapters.routers.flag import FlagRouter

            assert traffic.flagsFile is not None and traffic.flag is not None
            key = f"flag:{traffic.flagsFile}:{traffic.flag}"
            if key not in self.routers:
                self.routers[key] = FlagRouter(traffic.flagsFile, traffic.flag)
            return self.routers[key]  # type: ignore[no-any-return]
        if traffic.router == "envoy":
            return self._envoy_router(spec)
        if traffic.router == "envoy-ads":
            return self._ads_router()
        if traffic.router == "simulated":
            return self._simulated(spec)
        raise ValueError(f"traffic.router {traffic.router!r} cannot run in a controller process")

    def _envoy_router(self, spec: RolloutSpec) -> TrafficRouter:
        """One Envoy per listener, shared; a rollout whose mirror is compared gets a comparator in front."""
        traffic = spec.traffic
        key = f"envoy:{traffic.listen}"
        if key not in self.routers:
            from rollwise.adapters.routers.envoy import EnvoyRouter

            # One folder per listener: two Envoys watching the same xDS files would fight.
            folder = self.workdir / "envoy" / traffic.listen.replace(":", "_").replace("/", "_")
            self.routers[key] = EnvoyRouter(listen=traffic.listen, admin_port=traffic.adminPort, workdir=folder)
        compare = self._compared(spec)
        if not compare:
            return self.routers[key]  # type: ignore[no-any-return]
        compare_key = f"shadow:{spec.name}:{key}"
        if compare_key not in self.routers:
            from rollwise.adapters.shadow.comparator import ShadowComparison

            self.routers[compare_key] = ShadowComparison(self.routers[key], self._deployer(), compare)
        return self.routers[compare_key]  # type: ignore[no-any-return]

    def _ads_router(self) -> TrafficRouter:
        """One router for every ``envoy-ads`` rollout: it waits for the fleet's ACKs in the store."""
        if "envoy-ads" not in self.routers:
            from rollwise.adapters.routers.envoy_ads import EnvoyAdsRouter

            self.routers["envoy-ads"] = EnvoyAdsRouter(self._fleet(), poke=self._poke_ads)
        return self.routers["envoy-ads"]  # type: ignore[no-any-return]

    def _fleet(self) -> EnvoyFleet:
        fleet = open_fleet(self.store) if self.store is not None else None
        if fleet is None:
            raise ValueError("traffic.router envoy-ads needs a SQL store (the fleet's ACKs are kept there)")
        return fleet

    def _poke_ads(self) -> None:
        for poke in self.ads_pokes:
            poke()

    def _compared(self, spec: RolloutSpec) -> list[str]:
        """What a comparator compares on this rollout's mirrored copies; empty: none is put in front."""
        shadow = spec.strategy.shadow
        if shadow is None:
            return list(RESPONSE_COMPARISONS) if self.compare_mirrors else []
        return shadow.compared_responses

    def metrics_for(self, spec: RolloutSpec) -> MetricSource | None:
        """The spec's metric source, with what applications pushed merged into its windows' KPIs,
        and each look's evaluation batches when the analysis has evaluations (``agents/source.py``)."""
        source = self._detailed(spec, self._source_for(spec))
        if source is not None and self.store is not None:
            source = with_pushed_kpis(source, self.store)
        evaluations = {e.name: e for _, e in spec.evaluations()}  # a name in two analyses is one suite run
        if not evaluations:
            return source
        from rollwise.agents.source import with_evaluations

        return with_evaluations(source, {name: evaluation_runner(spec, e) for name, e in evaluations.items()})

    def _detailed(self, spec: RolloutSpec, source: MetricSource | None) -> MetricSource | None:
        """``source`` with what the RCA reads beside its counts (``telemetry/enrich.py``): the OTLP detail
        the services exported to this process (when the counts come from elsewhere), and the CPU and memory
        of the versions this runtime deploys."""
        if source is None:
            return None
        if self.telemetry is not None and spec.metrics.source != "otlp":
            from rollwise.telemetry.enrich import with_telemetry_detail

            source = with_telemetry_detail(source, self.telemetry,
                                           flag=spec.traffic.flag if spec.traffic.router == "flag" else None)
        if any(v.command for v in (spec.versions.stable, spec.versions.canary)):  # this runtime deploys them
            import time

            from rollwise.telemetry.enrich import with_process_usage

            source = with_process_usage(source, _processes(self), time.time)
        return source

    def _source_for(self, spec: RolloutSpec) -> MetricSource | None:
        source = spec.metrics.source
        if source == "envoy" and spec.traffic.router == "envoy-ads":
            from rollwise.adapters.metrics.envoy import EnvoyFleetMetricSource

            return EnvoyFleetMetricSource(self._fleet())
        if source == "envoy":
            router = self.router_for(spec)
            if not isinstance(router, HasAdmin):
                return None
            from rollwise.adapters.metrics.envoy import EnvoyMetricSource
            from rollwise.adapters.shadow.comparator import ShadowComparison

            envoy_source = EnvoyMetricSource(router.admin_url)
            if isinstance(router, ShadowComparison):
                router.metrics = envoy_source  # the comparator's counters join the shadow's stats
            return envoy_source
        if source == "prometheus":
            from rollwise.adapters.metrics.prometheus import PrometheusMetricSource

            queries = spec.metrics.prometheusQueries
            return PrometheusMetricSource(  # type: ignore[no-any-return]
                spec.metrics.prometheusUrl, queries=queries.model_dump(exclude_none=True) if queries else None)
        if source == "otlp" and self.telemetry is not None:
            from rollwise.adapters.metrics.otlp import OtlpMetricSource

            return OtlpMetricSource(self.telemetry, flag=spec.traffic.flag if spec.traffic.router == "flag" else None)
        if source == "pushed" and self.store is not None:
            from rollwise.adapters.metrics.pushed import PushedMetricSource

            return PushedMetricSource(self.store)
        if source == "simulated":
            return self._simulated(spec)
        return None

    def _simulated(self, spec: RolloutSpec) -> SimulatedWorld:
        """The simulator's service (``simulate/world.py``), one per rollout and kept for the process: the
        router it is given decides who serves, both versions healthy. ``router: simulated`` with
        ``metrics.source: simulated`` runs the real engine, store and leases with no data plane at all,
        which is what load and fleet measurements want (``bench/fleet_scale.py``)."""
        key = f"simulated:{spec.name}"
        if key not in self.routers:
            from rollwise.simulate.world import Behaviour, SimulatedWorld

            self.routers[key] = SimulatedWorld(Behaviour(), Behaviour(), seed=zlib.crc32(spec.name.encode()),
                                               t0=time.time())
        return self.routers[key]  # type: ignore[no-any-return]

    def deployer_for(self, spec: RolloutSpec) -> Deployer | None:
        needs_process = any(v.command for v in (spec.versions.stable, spec.versions.canary))
        if not needs_process:
            return None
        return self._deployer()

    def _deployer(self) -> Deployer:
        if self.deployer is None:
            from rollwise.adapters.deployers.local import LocalProcessDeployer

            self.deployer = LocalProcessDeployer(log_dir=self.workdir / "logs")
        return self.deployer

    def close(self) -> None:
        """Stop what this runtime holds: comparators and data planes, processes, its own notifier."""
        for router in self.routers.values():
            if isinstance(router, Closeable):
                router.close()
        if isinstance(self.deployer, Closeable):
            self.deployer.close()
        if self._owns_notifier and isinstance(self.notifier, Closeable):
            self.notifier.close()


def with_memory(spec: RolloutSpec, router: TrafficRouter | None, store: Store, clock: Clock) -> TrafficRouter | None:
    """``router`` with the agent's memory kept in step with each applied route (``agents/memory.py``)."""
    if spec.memory is None or router is None:
        return router
    from rollwise.agents.memory import MemoryLifecycle, MemoryRouter

    memory = spec.memory
    lifecycle = MemoryLifecycle(open_memory(memory.uri, memory.table, memory.key), memory.onPromote, clock.now)
    return MemoryRouter(router, lifecycle, store.get)


def open_memory(uri: str, table: str, key: str) -> MemoryStore:
    """The agent memory at ``uri`` (LanceDB); raises ``MemoryUnavailable`` (one line) without the extra."""
    from rollwise.adapters.agents.lancedb_memory import LanceMemory

    return LanceMemory(uri, table, key)


def evaluation_runner(spec: RolloutSpec, evaluation: EvaluationSpec) -> RunnerFactory:
    """A factory of ``evaluation``'s runner: its suite read once, each version's endpoint built once."""
    from rollwise.agents.graders import Graders
    from rollwise.agents.runner import EvaluationRunner
    from rollwise.agents.suite import parse_suite

    built: dict[str, Any] = {}

    def factory(query: Any) -> EvaluationRunner:
        if "runner" not in built:
            text = Path(evaluation.suite).read_text(encoding="utf-8")
            graders = Graders(default=evaluation.grader, command=evaluation.command)
            if evaluation.command:
                from rollwise.adapters.agents.command import SubprocessRunner

                graders.runner = SubprocessRunner()
            if evaluation.judge is not None and evaluation.judge.url:
                graders.judge = agent_endpoint(evaluation.judge, evaluation.judge.url, {})
            tasks = parse_suite(text, evaluation.suite)
            graders.check(tasks)
            urls = {side: endpoint_url(spec, evaluation.endpoint, side) for side in ("stable", "canary")}
            built["runner"] = EvaluationRunner(
                tasks=tasks, graders=graders, runs=evaluation.runs, per_batch=evaluation.tasksPerLook,
                concurrency=evaluation.concurrency,
                stable=agent_endpoint(evaluation.endpoint, urls["stable"], evaluation.endpoint.stableHeaders),
                canary=agent_endpoint(evaluation.endpoint, urls["canary"], evaluation.endpoint.canaryHeaders),
            )
        runner: EvaluationRunner = built["runner"]
        return runner

    return factory


def endpoint_url(spec: RolloutSpec, endpoint: AgentEndpointSpec, side: str) -> str:
    """Where ``side``'s agent is asked: the endpoint's own URL, else the version's upstream + path."""
    explicit = getattr(endpoint, f"{side}Url") or endpoint.url
    if explicit:
        return str(explicit)
    ref = getattr(spec.versions, side)
    address = ref.address or (f"127.0.0.1:{ref.port}" if ref.port else None)
    if address is None:
        raise ValueError(f"versions.{side} has no address or port: give endpoint.{side}Url")
    return f"http://{address}{endpoint.path}"


def agent_endpoint(endpoint: AgentEndpointSpec, url: str, headers: dict[str, str]) -> AgentEndpoint:
    """The adapter for ``endpoint.protocol`` at ``url``, sending ``headers`` with every task."""
    if endpoint.protocol == "openai-chat":
        from rollwise.adapters.agents.openai_chat import OpenAIChatEndpoint

        return OpenAIChatEndpoint(url, model=endpoint.model, timeout=endpoint.timeout, headers=headers)
    from rollwise.adapters.agents.json_post import JsonPostEndpoint

    return JsonPostEndpoint(url, input_field=endpoint.inputField, output_field=endpoint.outputField,
                            timeout=endpoint.timeout, headers=headers)


def change_source(path: Path) -> ChangeSource:
    """Where ``rollwise risk`` and ``rollout start --repo`` read a change and its history: git."""
    return GitRepository(path)
