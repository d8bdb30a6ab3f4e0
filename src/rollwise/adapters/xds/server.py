"""An aggregated xDS (ADS) gRPC server feeding any number of Envoys from the store, over state-of-the-world
and incremental (Delta xDS) streams alike.

Why it is shaped like this (measured facts in ``shared/notes/ads.md``):

* **The store holds the truth.** Desired routes are the store's records (``traffic.router:
  envoy-ads``), reloaded when a record's revision moves (a cheap poll, or at once when the router in
  the same process pokes). Resource versions are hashes of content, so a restarted server serves
  the versions the Envoys already run: nothing is re-applied, no weight reverts, and an Envoy that
  reconnects with the current version is left alone.
* **ACKs and NACKs go to the store** (``EnvoyFleet``), per Envoy, so the ``envoy-ads`` router can
  wait for them from any process, and ``rollwise fleet list`` can show them.
* **Both protocols, one set of rules.** An incremental stream (``api_type: DELTA_GRPC``) runs the same
  ``Session`` and sends only what differs from what its Envoy ACKed, plus the names to remove; each
  resource's version is its content's hash, so an Envoy that reconnects presenting the versions it
  holds (``initial_resource_versions``) is told nothing new when it is current.
* **One event loop, one thread.** Each stream's rules are the pure ``fleet.session.Session``; the
  loop owns every session, so there are no locks. Store reads and writes run on one worker thread,
  in order, so a slow database never stalls a stream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's C core logs to stderr itself; failures are raised here
import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401 - typed_config resolution
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, json_format

from rollwise.core.fleet import EnvoyNode
from rollwise.core.model import RolloutRecord
from rollwise.core.protocols import EnvoyFleet, NotFoundError, Store
from rollwise.fleet.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Desired,
    Node,
    desired_state,
    resource_version,
)
from rollwise.fleet.session import SHORT, Push, Session

log = logging.getLogger(__name__)

_MESSAGES: dict[str, Callable[[], Any]] = {
    CLUSTER_TYPE: cluster_pb2.Cluster,
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_TYPE: route_pb2.RouteConfiguration,
}
HEARTBEAT_S = 1.0


class AdsError(RuntimeError):
    """The ADS server could not start (address in use, bad address)."""


class AdsServer:
    """Serves the store's ``envoy-ads`` routes to every Envoy that connects. ``start``, ``poke``, ``close``."""

    def __init__(self, store: Store, fleet: EnvoyFleet, listen: str = "127.0.0.1:18000", *,
                 poll_s: float = 0.05, server_id: str | None = None) -> None:
        self.store = store
        self.fleet = fleet
        self.listen = listen
        self.poll_s = poll_s
        self.server_id = server_id or f"{socket.gethostname()}:{os.getpid()}:{listen}"
        self.port: int | None = None
        self._desired = Desired(())
        self._marks: dict[str, int] = {}
        self._records: dict[str, RolloutRecord] = {}
        self._streams: dict[int, tuple[Session, asyncio.Queue[Any]]] = {}
        self._nonces = itertools.count(1)
        self._packed: dict[tuple[str, str], list[any_pb2.Any]] = {}
        self._packed_one: dict[tuple[str, str], any_pb2.Any] = {}  # (type, resource version) -> packed
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ads-store")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rollwise-ads", daemon=True)
        self._stopping: asyncio.Event | None = None
        self._dirty: dict[str, EnvoyNode] = {}
        self._flusher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> AdsServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AdsError(f"ADS server on {self.listen} did not start within {timeout}s")
        if self._error is not None:
            raise AdsError(f"ADS server cannot listen on {self.listen}: {self._error}")
        return self

    def poke(self) -> None:
        """Reload the store now (a route was just committed in this process)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def close(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
            self._thread.join(timeout=5)
        self._io.shutdown(wait=True)

    def __enter__(self) -> AdsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        self.port = server.add_insecure_port(self.listen)
        if not self.port:
            raise AdsError("address in use or invalid")
        await self._reload()
        await server.start()
        self._ready.set()
        tasks = [asyncio.create_task(self._watch_store()), asyncio.create_task(self._heartbeat())]
        await self._stopping.wait()
        for task in tasks:
            task.cancel()
        for _session, out in self._streams.values():
            out.put_nowait(None)
        await server.stop(grace=0.5)
        for session, _ in list(self._streams.values()):
            await self._persist(session, connected=False)
        if self._flusher is not None:
            await self._flusher

    # ------------------------------------------------------------ the store

    async def _watch_store(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                changed = await self._reload()
            except Exception as exc:  # a store outage: keep serving what the Envoys have
                log.warning("ADS: cannot read the store: %s", str(exc).splitlines()[0] if str(exc) else exc)
                continue
            if changed:
                for session, out in list(self._streams.values()):
                    self._pump(session, out)
                    await self._persist(session)

    async def _reload(self) -> bool:
        loop = asyncio.get_running_loop()
        desired = await loop.run_in_executor(self._io, self._read_desired)
        if desired is None:
            return False
        self._desired = desired
        return True

    def _read_desired(self) -> Desired | None:
        marks = self.fleet.route_marks()
        if marks == self._marks:
            return None
        for name, revision in marks.items():
            if self._marks.get(name) != revision:
                try:
                    self._records[name] = self.store.get(name)
                except NotFoundError:
                    self._records.pop(name, None)
        for name in set(self._records) - set(marks):
            del self._records[name]
        self._marks = marks
        desired = desired_state(self._records.values())
        for name, why in desired.errors.items():
            log.warning("ADS: rollout %s is not served: %s", name, why)
        if desired.served == self._desired.served:
            return None
        return desired

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            ids = [session.node.id for session, _ in self._streams.values()]
            try:
                await loop.run_in_executor(self._io, self.fleet.heartbeat, self.server_id, ids, time.time())
            except Exception as exc:
                log.warning("ADS: heartbeat not written: %s", exc)

    async def _persist(self, session: Session, connected: bool = True) -> None:
        """Record the session's state: rows are written in batches, one transaction for every Envoy that
        changed meanwhile, so six ACKs arriving together cost one commit, not six in a row."""
        node = session.node
        self._dirty[node.id] = EnvoyNode(
            node_id=node.id, region=node.region, zone=node.zone, admin=node.admin,
            listen=f"{node.listen_address}:{node.listen_port}", server=self.server_id, connected=connected,
            seen_at=time.time(), versions={SHORT[t]: v for t, v in session.acked_version.items()},
            confirmed=session.confirmed(self._desired), nacked=dict(session.nacked),
            nack_message=session.nack_message, nack_at=time.time() if session.nack_message else None,
            acked_clusters={"version": session.acked_version[CLUSTER_TYPE], "resources": session.acked[CLUSTER_TYPE]}
            if CLUSTER_TYPE in session.acked_version else None,
            protocol="delta" if session.incremental else "sotw",
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            rows, self._dirty = list(self._dirty.values()), {}
            try:
                await loop.run_in_executor(self._io, self.fleet.record_nodes, rows)
            except Exception as exc:
                log.warning("ADS: state of %s not written: %s", ", ".join(r.node_id for r in rows), exc)

    # ------------------------------------------------------------ streams

    async def stream(self, requests: AsyncIterator[Any], delta: bool = False) -> AsyncIterator[Any]:
        """One Envoy's stream: ``DiscoveryRequest``s in and ``DiscoveryResponse``s out, or with ``delta``
        their incremental forms (``DeltaDiscoveryRequest``/``DeltaDiscoveryResponse``)."""
        out: asyncio.Queue[Any] = asyncio.Queue()
        key = id(out)
        holder: dict[str, Session] = {}

        async def read() -> None:
            try:
                async for request in requests:
                    session = holder.get("session")
                    if session is None:
                        metadata = json_format.MessageToDict(request.node.metadata)
                        node = Node.from_metadata(request.node.id, metadata)
                        session = holder["session"] = Session(node, incremental=delta)
                        await self._recall(session)
                        self._streams[key] = (session, out)
                    if await self._handle(session, request):
                        self._pump(session, out)
                        await self._persist(session)
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            finally:
                out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await out.get()) is not None:
                yield response
        finally:
            reader.cancel()
            self._streams.pop(key, None)
            session = holder.get("session")
            if session is not None and not any(s.node.id == session.node.id for s, _ in self._streams.values()):
                await self._persist(session, connected=False)

    async def _recall(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            known = await loop.run_in_executor(self._io, self.fleet.acked_clusters, session.node.id)
        except Exception as exc:
            log.warning("ADS: clusters of %s not read: %s", session.node.id, exc)
            return
        if known and known.get("version") and isinstance(known.get("resources"), dict):
            session.recall(CLUSTER_TYPE, str(known["version"]), known["resources"])

    async def _handle(self, session: Session, request: Any) -> bool:
        """Apply one request to the session; True if something may need sending or recording."""
        type_url = request.type_url
        if type_url not in _MESSAGES:
            return False
        if not request.response_nonce:
            if session.incremental:
                session.subscribe_delta(type_url, list(request.resource_names_subscribe),
                                        dict(request.initial_resource_versions), self._desired)
            else:
                session.subscribe(type_url, list(request.resource_names), request.version_info, self._desired)
            return True
        if request.HasField("error_detail"):
            message = request.error_detail.message
            if session.nack(type_url, request.response_nonce, message):
                log.warning("ADS: Envoy %s rejected %s: %s", session.node.id, SHORT[type_url], message)
                return True
            return False
        return session.ack(type_url, request.response_nonce)

    def _pump(self, session: Session, out: asyncio.Queue[Any]) -> None:
        for push in session.pending(self._desired):
            nonce = str(next(self._nonces))
            if session.incremental:
                changed, removed = session.difference(push)
                response: Any = discovery_pb2.DeltaDiscoveryResponse(
                    system_version_info=push.version, type_url=push.type_url, nonce=nonce,
                    resources=[self._resource(push.type_url, body) for body in changed], removed_resources=removed)
            else:
                response = discovery_pb2.DiscoveryResponse(
                    version_info=push.version, type_url=push.type_url, nonce=nonce, resources=self._pack(push))
            session.sent(push, nonce)
            out.put_nowait(response)

    def _pack(self, push: Push) -> list[any_pb2.Any]:
        key = (push.type_url, push.version)
        if key not in self._packed:
            if len(self._packed) > 256:
                self._packed.clear()
            self._packed[key] = [self._packed_resource(push.type_url, resource) for resource in push.resources]
        return self._packed[key]

    def _resource(self, type_url: str, body: dict[str, Any]) -> discovery_pb2.Resource:
        version = resource_version(body)
        key = (type_url, version)
        if key not in self._packed_one:
            if len(self._packed_one) > 4096:
                self._packed_one.clear()
            self._packed_one[key] = self._packed_resource(type_url, body)
        return discovery_pb2.Resource(name=str(body["name"]), version=version, resource=self._packed_one[key])

    @staticmethod
    def _packed_resource(type_url: str, body: dict[str, Any]) -> any_pb2.Any:
        wrapped = any_pb2.Any()
        wrapped.Pack(json_format.ParseDict(body, _MESSAGES[type_url]()))
        return wrapped


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: AdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        # grpc.aio streams responses only from an async generator function (checked by inspection)
        async for response in self._server.stream(request_iterator):
            yield response

    async def DeltaAggregatedResources(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in self._server.stream(request_iterator, delta=True):
            yield response
