"""What a spec that arrives over the API may make this server do.

A spec names files the controller writes, URLs it calls, processes it starts and upstreams it
sends users to. From a local file that is the operator's own choice; from the API it comes from a
token holder, so every such field must stay inside what the operator allowed with ``rollwise serve``:

| field | rule over the API |
|---|---|
| ``versions.*.command`` (and its ``healthPath``) | refused unless ``--allow-commands`` |
| ``versions.*.address``, ``versions.*.addresses`` | loopback, or a host/network given with ``--allow-upstream`` |
| ``traffic.path`` (file router), ``traffic.flagsFile`` (flag router) | must resolve (symlinks and ``..``
  followed) inside a folder given with ``--allow-path``; no path means the server's own folder |
| ``metrics.prometheusUrl`` | the default (local Prometheus), or under an ``--allow-url`` prefix |
| ``notify.slack`` / ``teams`` / ``webhook`` | under an ``--allow-url`` prefix; ``*Env`` references
  (the operator's own environment) must name a variable that is set |
| ``notify.reportUrl`` | http(s) only: it is a link in messages, the server never fetches it |
| ``traffic.listen`` / ``adminPort`` | allowed: they bind Envoy's ports; its config stays in the server's folder |
| ``memory.uri`` (an agent's LanceDB memory) | a folder the server writes: inside an ``--allow-path`` folder |
| ``…analysis.evaluations[i].suite`` | a file the server reads: inside an ``--allow-path`` folder |
| ``…evaluations[i].command`` (command grader) | refused unless ``--allow-commands`` |
| ``…evaluations[i].endpoint.stableUrl/canaryUrl/url``, ``judge.url`` | under an ``--allow-url`` prefix
  (without them the agents are asked at ``versions.*.address``, already an allowed upstream) |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rollwise.spec.models import MetricsSourceSpec, RolloutSpec
from rollwise.spec.secrets import SECRET_URL_FIELDS, is_redacted

Refusal = tuple[tuple[str, ...], str]  # (field path, reason)
DEFAULT_PROMETHEUS: str = MetricsSourceSpec.model_fields["prometheusUrl"].default
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class SpecPolicy:
    """The operator's allow-lists for specs from the API (``rollwise serve --allow-…``)."""

    allow_commands: bool = False
    allow_paths: tuple[Path, ...] = ()
    allow_urls: tuple[str, ...] = ()
    allow_upstreams: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def refusals(self, spec: RolloutSpec) -> list[Refusal]:
        """Every field of ``spec`` that reaches outside what the operator allowed, with the reason."""
        found = self._versions(spec)
        traffic = spec.traffic
        if traffic.router == "file" and traffic.path is not None:
            found += self._path(("traffic", "path"), traffic.path)
        if traffic.router == "flag" and traffic.flagsFile is not None:
            found += self._path(("traffic", "flagsFile"), traffic.flagsFile)
        if spec.metrics.prometheusUrl != DEFAULT_PROMETHEUS:  # the default is the server's own local Prometheus
            found += self._url(("metrics", "prometheusUrl"), spec.metrics.prometheusUrl)
        if spec.memory is not None:
            found += self._path(("memory", "uri"), spec.memory.uri)
        return found + self._notify(spec) + self._evaluations(spec)

    def _evaluations(self, spec: RolloutSpec) -> list[Refusal]:
        """An evaluation reads a suite, may run a grader command and calls agent endpoints."""
        found: list[Refusal] = []
        for where, evaluation in spec.evaluations():
            found += self._path((*where, "suite"), evaluation.suite)
            if evaluation.command and not self.allow_commands:
                found.append(((*where, "command"), "this server does not run grader commands (run `rollwise "
                              "serve --allow-commands` to allow it); use another grader"))
            endpoints = [("endpoint", evaluation.endpoint), ("judge", evaluation.judge)]
            for name, endpoint in endpoints:
                for key in ("stableUrl", "canaryUrl", "url"):
                    url = getattr(endpoint, key) if endpoint is not None else None
                    if url is not None and not _on_listener(url, spec.traffic.listen):
                        found += self._url((*where, name, key), url)
        return found

    def url_refusal(self, where: str, url: str) -> str | None:
        """Why a Prometheus URL named in an API call (not a spec: a bridge's parameter) may not be
        called, as ``where: reason``; None when allowed. The same rule as ``metrics.prometheusUrl``."""
        if url == DEFAULT_PROMETHEUS:
            return None
        found = self._url((where,), url)
        return f"{where}: {found[0][1]}" if found else None

    def _versions(self, spec: RolloutSpec) -> list[Refusal]:
        found: list[Refusal] = []
        for side in ("stable", "canary"):
            ref = getattr(spec.versions, side)
            if ref.command and not self.allow_commands:
                found.append((("versions", side, "command"),
                              "this server does not start processes (run `rollwise serve --allow-commands` to "
                              "allow it); give an address instead"))
            if ref.address and not self._upstream_allowed(ref.address.rsplit(":", 1)[0].strip("[]")):
                found.append((("versions", side, "address"),
                              f"{ref.address} is not an upstream this server may send traffic to (loopback"
                              f"{_listed(self.allow_upstreams)}; see `rollwise serve --allow-upstream`)"))
            for i, address in enumerate(ref.addresses):  # an envoy-ads pool: each endpoint like address
                if not self._upstream_allowed(address.rsplit(":", 1)[0].strip("[]")):
                    found.append((("versions", side, "addresses", str(i)),
                                  f"{address} is not an upstream this server may send traffic to (loopback"
                                  f"{_listed(self.allow_upstreams)}; see `rollwise serve --allow-upstream`)"))
        return found

    def _upstream_allowed(self, host: str) -> bool:
        if _is_loopback(host):
            return True
        for allowed in self.allow_upstreams:
            if host.lower() == allowed.lower():
                return True
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(allowed, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def _path(self, where: tuple[str, ...], given: str) -> list[Refusal]:
        resolved = Path(os.path.realpath(given))  # as the router will open it: no ~, relative to the cwd
        for root in self.allow_paths:
            if resolved.is_relative_to(Path(os.path.realpath(root))):
                return []
        return [(where, f"{given} is outside the folders this server may write "
                        f"({', '.join(str(r) for r in self.allow_paths) or 'none allowed'}; "
                        "see `rollwise serve --allow-path`)")]

    def _url(self, where: tuple[str, ...], url: str, secret: bool = False) -> list[Refusal]:
        shown = _origin(url) if secret or "@" in url else url  # never echo a token or user:password
        if is_redacted(url):
            return [(where, "is a redacted placeholder; send the real value or an Env reference")]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return [(where, f"{shown} is not an http(s) URL")]
        if any(_under(url, prefix) for prefix in self.allow_urls):
            return []
        return [(where, f"{shown} is not under a URL this server may call"
                        f"{' (' + ', '.join(self.allow_urls) + ')' if self.allow_urls else ' (none allowed)'}; "
                        "see `rollwise serve --allow-url`")]

    def _notify(self, spec: RolloutSpec) -> list[Refusal]:
        notify = spec.notify
        if notify is None:
            return []
        found: list[Refusal] = []
        for key in SECRET_URL_FIELDS:
            value = getattr(notify, key)
            if value is not None:
                found += self._url(("notify", key), value, secret=True)
        for key in (*SECRET_URL_FIELDS, "webhookSecret"):
            name = getattr(notify, f"{key}Env")
            if name is not None and not self.env.get(name):
                found.append((("notify", f"{key}Env"), f"{name} is not set in this server's environment"))
        if notify.webhookSecret is not None and is_redacted(notify.webhookSecret):
            found.append((("notify", "webhookSecret"),
                          "is a redacted placeholder; send the real value or webhookSecretEnv"))
        if notify.reportUrl is not None and urlsplit(notify.reportUrl).scheme not in ("http", "https"):
            found.append((("notify", "reportUrl"), "is not an http(s) URL"))
        return found


def _on_listener(url: str, listen: str) -> bool:
    """``url`` is the rollout's own Envoy listener (loopback): asking the agents through it is routing, not egress."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    host, _, listen_port = listen.rpartition(":")
    return (parts.scheme == "http" and parts.username is None and parts.hostname is not None
            and _is_loopback(parts.hostname) and _is_loopback(host.strip("[]") or "127.0.0.1")
            and str(port) == listen_port)


def _listed(items: tuple[str, ...]) -> str:
    return f", {', '.join(items)}" if items else ""


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> str:
    """Scheme and host only: what may be shown of a URL that embeds a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else "the URL"


def _under(url: str, prefix: str) -> bool:
    """``url`` lies under ``prefix``, compared part by part (never ``https://a.com`` ⊃ ``https://a.com.evil``)."""
    have, want = urlsplit(url), urlsplit(prefix)
    try:
        ports = (have.port or _DEFAULT_PORT.get(have.scheme), want.port or _DEFAULT_PORT.get(want.scheme))
    except ValueError:
        return False
    if have.username is not None or have.password is not None:
        return False
    if any(seg in (".", "..") for seg in have.path.split("/")) or "%2e" in have.path.lower() or "\\" in have.path:
        return False  # clients normalise dot segments: /hooks/../admin would leave the prefix
    if have.scheme != want.scheme or (have.hostname or "") != (want.hostname or "") or ports[0] != ports[1]:
        return False
    base = want.path if want.path.endswith("/") else want.path + "/"
    return have.path == want.path or have.path.startswith(base) or base == "/"


_DEFAULT_PORT = {"http": 80, "https": 443}
