"""How rollwise names things inside Envoy: one cluster per version of a rollout, plus its mirror cluster.

The Envoy router writes these names into Envoy's config and the metric sources (Envoy's admin API,
Prometheus scraping it) find a version's counters by them, so both sides must spell them the same
way. An adapter never imports another adapter, so the convention lives here, outside ``adapters/``,
where the router and every metric source can share it.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")

MIRROR_SUFFIX = "-shadow"
"""Appended to a version's cluster for the cluster its mirrored copies go to (a response comparator)."""


def cluster_name(rollout: str, version: str) -> str:
    """Envoy cluster for one version of one rollout: ``<rollout>-<version>``, unsafe characters as ``_``.

    Dots are replaced because Envoy's tag extraction reads the cluster name up to the first dot;
    a dotted name would break the ``envoy_cluster_name`` label every metric source relies on.
    """
    return _UNSAFE.sub("_", f"{rollout}-{version}")


def mirror_cluster_name(rollout: str, version: str) -> str:
    """Envoy cluster that receives the mirrored copies meant for ``version`` (see ``MIRROR_SUFFIX``)."""
    return cluster_name(rollout, version) + MIRROR_SUFFIX
