"""One Envoy's xDS stream as a pure state machine: what to send next, what it accepted.

It thinks in whole resource sets per type (state of the world); an incremental (Delta xDS) stream
uses the same rules and sends only the difference from what the Envoy ACKed (``difference``).

The gRPC server (``adapters/xds/server.py``) feeds it requests and the desired state and sends what
``pending`` returns; everything here is plain data, so the ordering rules are tested without Envoy:

* **Clusters before routes, removals after.** A route may only name a cluster the Envoy already
  ACKed (routes are validated: ``validate_clusters``); a cluster no route needs any more is removed
  only once the routes without it were ACKed, so no request ever meets a missing cluster.
* **One response in flight per type.** A change that arrives meanwhile is sent after the ACK or NACK.
* **A NACK holds only the rollouts that caused it.** The virtual hosts that changed in the rejected
  routes are held at what the Envoy last accepted until their rollout's route changes again, and
  the rest is sent again at once: one rollout's bad header regex never blocks another's weights.
* **Confirmation is by content.** A rollout's revision counts as served by this Envoy when the
  routes and clusters it ACKed equal what that revision renders to for the Envoy's region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollwise.fleet.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_CONFIG,
    ROUTE_TYPE,
    Desired,
    Node,
    content_version,
    listener,
    resource_version,
    route_configuration,
)

Resources = dict[str, dict[str, Any]]  # resource name -> resource (Envoy JSON form)
SHORT = {CLUSTER_TYPE: "cds", LISTENER_TYPE: "lds", ROUTE_TYPE: "rds"}


@dataclass
class InFlight:
    nonce: str
    version: str
    resources: Resources
    revisions: dict[str, int]  # rollout -> the desired revision each resource set was rendered from


@dataclass(frozen=True)
class Push:
    type_url: str
    version: str
    resources: list[dict[str, Any]]
    revisions: dict[str, int]


@dataclass
class Session:
    node: Node
    incremental: bool = False  # a Delta xDS stream (sent ``difference``s) rather than state of the world
    subscribed: set[str] = field(default_factory=set)  # type URLs the Envoy asked for
    acked: dict[str, Resources] = field(default_factory=dict)
    acked_version: dict[str, str] = field(default_factory=dict)
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # type -> version of content refused (not resent)
    held: dict[str, tuple[int, dict[str, Any] | None]] = field(default_factory=dict)  # rollout -> (rev, vhost)
    nacked: dict[str, int] = field(default_factory=dict)
    nack_message: str | None = None
    known: dict[str, tuple[str, Resources]] = field(default_factory=dict)  # type -> (version, content) on record

    def recall(self, type_url: str, version: str, resources: Resources) -> None:
        """What the store says this Envoy last ACKed: used if it presents that version when it (re)subscribes."""
        self.known[type_url] = (version, resources)

    # ------------------------------------------------------------ what the Envoy said

    def subscribe(self, type_url: str, names: list[str], presented: str, desired: Desired) -> None:
        """A new (re)subscription: an empty nonce. What the Envoy presents is what it runs now."""
        if not self._begin(type_url, names):
            return
        target = self._target(type_url, desired)
        if presented and presented == content_version(_listed(target)):
            # Reconnected and already current (a restarted server with the same store): nothing to send.
            self.acked[type_url], self.acked_version[type_url] = target, presented
        elif presented and self.known.get(type_url, ("", {}))[0] == presented:
            # Reconnected behind the store: its clusters are known, so the grow-then-shrink order holds.
            self.acked[type_url], self.acked_version[type_url] = self.known[type_url][1], presented

    def subscribe_delta(self, type_url: str, names: list[str], presented: dict[str, str], desired: Desired) -> None:
        """A new incremental (Delta xDS) subscription: ``presented`` is each resource the Envoy holds with its
        version (``initial_resource_versions``, empty on a first connection). A resource whose version is
        what the store wants, or what the store says it last ACKed, counts as held with that content; one
        held with content unknown here (a name only) is replaced or removed by the next push."""
        if not self._begin(type_url, names) or not presented:
            return
        target, known = self._target(type_url, desired), self.known.get(type_url, ("", {}))[1]
        held: Resources = {}
        for name, version in presented.items():
            held[name] = next((source[name] for source in (target, known)
                               if name in source and resource_version(source[name]) == version), {"name": name})
        self.acked[type_url], self.acked_version[type_url] = held, content_version(_listed(held))

    def _begin(self, type_url: str, names: list[str]) -> bool:
        """Start (or restart) a subscription to ``type_url``; False for routes other than rollwise's."""
        if type_url == ROUTE_TYPE and names and ROUTE_CONFIG not in names:
            return False
        self.subscribed.add(type_url)
        self.in_flight.pop(type_url, None)
        self.rejected.pop(type_url, None)
        return True

    def difference(self, push: Push) -> tuple[list[dict[str, Any]], list[str]]:
        """What an incremental stream sends for ``push``: the resources that differ from what the Envoy
        ACKed, and the names it holds that ``push`` no longer has."""
        acked = self.acked.get(push.type_url, {})
        wanted = {str(r["name"]): r for r in push.resources}
        changed = [body for name, body in wanted.items() if acked.get(name) != body]
        return changed, sorted(set(acked) - set(wanted))

    def ack(self, type_url: str, nonce: str) -> bool:
        sent = self.in_flight.get(type_url)
        if sent is None or sent.nonce != nonce:
            return False  # stale: an answer to something superseded
        del self.in_flight[type_url]
        self.acked[type_url], self.acked_version[type_url] = sent.resources, sent.version
        for name, revision in sent.revisions.items():
            if name in self.nacked and self.nacked[name] <= revision and name not in self.held:
                del self.nacked[name]
        if not self.nacked:
            self.nack_message = None
        return True

    def nack(self, type_url: str, nonce: str, message: str) -> bool:
        sent = self.in_flight.get(type_url)
        if sent is None or sent.nonce != nonce:
            return False
        del self.in_flight[type_url]
        self.rejected[type_url] = sent.version
        self.nack_message = message
        blamed = self._changed_rollouts(type_url, sent)
        for name in blamed:
            self.nacked[name] = sent.revisions.get(name, 0)
        if type_url == ROUTE_TYPE and blamed:
            accepted = self._acked_vhosts()
            for name in blamed:
                self.held[name] = (sent.revisions.get(name, 0), accepted.get(name))
            self.rejected.pop(type_url, None)  # the held content differs: resend the rest at once
        return True

    # ------------------------------------------------------------ what to send

    def pending(self, desired: Desired) -> list[Push]:
        """Responses to send now, in order (clusters, listener, routes); call ``sent`` for each."""
        self._release_held(desired)
        pushes = []
        for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
            if type_url not in self.subscribed or type_url in self.in_flight:
                continue
            target = self._target(type_url, desired)
            if type_url == ROUTE_TYPE and not self._clusters_ready(target):
                continue
            version = content_version(_listed(target))
            if version == self.acked_version.get(type_url) or version == self.rejected.get(type_url):
                continue
            pushes.append(Push(type_url, version, _listed(target), self._revisions(type_url, desired)))
        return pushes

    def sent(self, push: Push, nonce: str) -> None:
        resources = {str(r["name"]): r for r in push.resources}
        self.in_flight[push.type_url] = InFlight(nonce, push.version, resources, push.revisions)

    def confirmed(self, desired: Desired) -> dict[str, int]:
        """Rollout -> revision this Envoy now serves exactly (routes and clusters ACKed as desired)."""
        vhosts = self._acked_vhosts()
        clusters = self.acked.get(CLUSTER_TYPE, {})
        out = {}
        for name in desired.names():
            wanted = desired.virtual_host(name, self.node.region)
            if wanted is None or vhosts.get(name) != wanted:
                continue
            if all(clusters.get(c) == body for c, body in desired.clusters(name).items()):
                out[name] = desired.revision(name)
        return out

    # ------------------------------------------------------------ targets

    def _target(self, type_url: str, desired: Desired) -> Resources:
        if type_url == LISTENER_TYPE:
            return {"rollwise": listener(self.node)}
        if type_url == ROUTE_TYPE:
            return {ROUTE_CONFIG: route_configuration(self._vhosts(desired).values())}
        final: Resources = {}
        for name in desired.names():
            final.update(desired.clusters(name))
        acked = self.acked.get(CLUSTER_TYPE, {})
        for _, vhost in self.held.values():  # a held route still names the clusters it was accepted with
            final.update({c: acked[c] for c in _cluster_refs(vhost) if c in acked})
        # Grow first; shrink once the routes without them are ACKed. Until the Envoy has (re)subscribed to
        # the routes, the ones it runs may still name any cluster it holds: keep those too.
        routes_current = self.acked_version.get(ROUTE_TYPE) == content_version(
            _listed(self._target(ROUTE_TYPE, desired)))
        return final if routes_current else {**acked, **final}

    def _vhosts(self, desired: Desired) -> dict[str, dict[str, Any]]:
        vhosts: dict[str, dict[str, Any]] = {}
        for name in desired.names():
            held = self.held.get(name)
            if held is not None:
                if held[1] is not None:
                    vhosts[name] = held[1]
                continue
            vhost = desired.virtual_host(name, self.node.region)
            if vhost is not None:
                vhosts[name] = vhost
        return vhosts

    def _release_held(self, desired: Desired) -> None:
        """A held rollout whose route moved on (a new revision, or gone) is tried again."""
        for name, (revision, _) in list(self.held.items()):
            if name not in desired.names() or desired.revision(name) != revision:
                del self.held[name]

    def _clusters_ready(self, routes: Resources) -> bool:
        acked = self.acked.get(CLUSTER_TYPE, {})
        needed = {c for config in routes.values() for vhost in config["virtual_hosts"] for c in _cluster_refs(vhost)}
        return needed <= acked.keys()

    def _revisions(self, type_url: str, desired: Desired) -> dict[str, int]:
        return {name: desired.revision(name) for name in desired.names()} if type_url != LISTENER_TYPE else {}

    def _acked_vhosts(self) -> dict[str, dict[str, Any]]:
        config = self.acked.get(ROUTE_TYPE, {}).get(ROUTE_CONFIG)
        return {str(v["name"]): v for v in config["virtual_hosts"]} if config else {}

    def _changed_rollouts(self, type_url: str, sent: InFlight) -> list[str]:
        """The rollouts whose part of a rejected response differs from what the Envoy accepted."""
        if type_url == ROUTE_TYPE:
            config = sent.resources.get(ROUTE_CONFIG) or {"virtual_hosts": []}
            before = self._acked_vhosts()
            return [str(v["name"]) for v in config["virtual_hosts"] if before.get(str(v["name"])) != v]
        if type_url == CLUSTER_TYPE:
            acked = self.acked.get(CLUSTER_TYPE, {})
            changed = {name for name, body in sent.resources.items() if acked.get(name) != body}
            return [r for r in sent.revisions if any(c.startswith(f"{r}-") for c in changed)] or list(sent.revisions)
        return []


def _listed(resources: Resources) -> list[dict[str, Any]]:
    return [resources[name] for name in sorted(resources)]


def _cluster_refs(vhost: dict[str, Any] | None) -> set[str]:
    """Every cluster a virtual host routes or mirrors to."""
    found: set[str] = set()
    for route in (vhost or {}).get("routes", []):
        action = route.get("route", {})
        if "cluster" in action:
            found.add(action["cluster"])
        for weighted in action.get("weighted_clusters", {}).get("clusters", []):
            found.add(weighted["name"])
        for mirror in action.get("request_mirror_policies", []):
            found.add(mirror["cluster"])
    return found
