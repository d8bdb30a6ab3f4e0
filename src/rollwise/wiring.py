"""The composition root: turns a spec's choices into concrete adapters.

This is the one place that knows every adapter. The core only sees protocols, and adapters
never see each other; the controller, CLI and API ask this module for what a spec needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollwise.core.protocols import Deployer, MetricSource, Notifier, Store, TrafficRouter
from rollwise.spec.models import RolloutSpec


def open_store(url: str | None = None) -> Store:
    """The store at ``url``, ``ROLLWISE_STORE``, or SQLite under ~/.rollwise; ``memory://`` for none."""
    if url == "memory://":
        from rollwise.adapters.stores.memory import MemoryStore

        return MemoryStore()
    from rollwise.adapters.stores.sql import SqlStore, default_store_url

    return SqlStore(url or default_store_url())


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
        wanted = [("slack", notify.slack, None), ("teams", notify.teams, None),
                  ("webhook", notify.webhook, notify.webhookSecret or secret)]
        return [((channel, url, key), lambda c=channel, u=url, k=key: make(c, u, k))
                for channel, url, key in wanted if url and (channel, url) not in static]

    return FanoutNotifier(list(static.values()), for_spec=for_spec)


@dataclass
class Runtime:
    """The adapters one controller process uses, shared across the rollouts it drives."""

    workdir: Path = field(default_factory=lambda: Path("~/.rollwise").expanduser())
    routers: dict[str, Any] = field(default_factory=dict)
    deployer: Deployer | None = None
    store: Store | None = None  # for sources that read what applications pushed
    notifier: Notifier | None = None

    def __post_init__(self) -> None:
        if self.notifier is None:
            self.notifier = build_notifier(store=self.store)

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
            key = f"envoy:{traffic.listen}"
            if key not in self.routers:
                from rollwise.adapters.routers.envoy import EnvoyRouter

                self.routers[key] = EnvoyRouter(listen=traffic.listen, admin_port=traffic.adminPort,
                                                workdir=self.workdir / "envoy")
            return self.routers[key]  # type: ignore[no-any-return]
        raise ValueError(f"traffic.router {traffic.router!r} cannot run in a controller process")

    def metrics_for(self, spec: RolloutSpec) -> MetricSource | None:
        source = spec.metrics.source
        if source == "envoy":
            router = self.router_for(spec)
            admin_url = getattr(router, "admin_url", None)
            if admin_url is None:
                return None
            from rollwise.adapters.metrics.envoy import EnvoyMetricSource

            return EnvoyMetricSource(admin_url)  # type: ignore[no-any-return]
        if source == "prometheus":
            from rollwise.adapters.metrics.prometheus import PrometheusMetricSource

            return PrometheusMetricSource(spec.metrics.prometheusUrl)  # type: ignore[no-any-return]
        if source == "pushed" and self.store is not None:
            from rollwise.adapters.metrics.pushed import PushedMetricSource

            return PushedMetricSource(self.store)
        return None

    def deployer_for(self, spec: RolloutSpec) -> Deployer | None:
        needs_process = any(v.command for v in (spec.versions.stable, spec.versions.canary))
        if not needs_process:
            return None
        if self.deployer is None:
            from rollwise.adapters.deployers.local import LocalProcessDeployer

            self.deployer = LocalProcessDeployer(log_dir=self.workdir / "logs")
        return self.deployer

    def close(self) -> None:
        for router in self.routers.values():
            close = getattr(router, "close", None)
            if close is not None:
                close()
        close_deployer = getattr(self.deployer, "close", None)
        if close_deployer is not None:
            close_deployer()
        close_notifier = getattr(self.notifier, "close", None)
        if close_notifier is not None:
            close_notifier()
