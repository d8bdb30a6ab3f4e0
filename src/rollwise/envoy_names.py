"""How rollwise names things inside Envoy: one cluster per version of a rollout, plus its mirror cluster,
and how a header or cookie route reads in Envoy's route config.

The Envoy router writes these names into Envoy's config and the metric sources (Envoy's admin API,
Prometheus scraping it) find a version's counters by them, so both sides must spell them the same
way. An adapter never imports another adapter, so the convention lives here, outside ``adapters/``,
where the router and every metric source can share it; the file router and the ADS fleet's resources
(``fleet/resources.py``) build header routes the same way from here.
"""

from __future__ import annotations

import re
from typing import Any

from rollwise.spec.models import HeaderMatch, HeaderRouteSpec

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")

# Fine latency buckets (ms): Envoy's defaults jump 0.5,1,5,10,25,50,100,250,... which makes p99
# estimates from bucket deltas useless for a judge that compares 40 ms with 60 ms.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90,
    100, 120, 140, 160, 180, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000, 1250, 1500,
    2000, 2500, 3000, 4000, 5000, 7500, 10000, 30000, 60000,
)  # fmt: skip

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


def _string_match(match: HeaderMatch) -> dict[str, Any]:
    if match.exact is not None:
        return {"exact": match.exact}
    if match.prefix is not None:
        return {"prefix": match.prefix}
    if match.regex is not None:
        return {"safe_regex": {"regex": match.regex}}
    return {"safe_regex": {"regex": ".*"}}  # presence match


def header_matchers(spec: HeaderRouteSpec) -> list[dict[str, Any]]:
    """Envoy header matchers for a header route: its headers, and each cookie as a whole-value regex."""
    matchers: list[dict[str, Any]] = [{"name": h.name.lower(), "string_match": _string_match(h)} for h in spec.headers]
    for name, value in (spec.cookie or {}).items():
        # Envoy's safe_regex must match the whole header value: allow other cookies around it.
        pattern = rf"(.*;\s*)?{re.escape(name)}={re.escape(value)}(\s*;.*)?"
        matchers.append({"name": "cookie", "string_match": {"safe_regex": {"regex": pattern}}})
    return matchers
