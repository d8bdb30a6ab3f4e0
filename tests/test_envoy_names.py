"""The Envoy naming convention the router writes and every metric source reads."""

from __future__ import annotations

from rollwise.envoy_names import MIRROR_SUFFIX, cluster_name, mirror_cluster_name


def test_cluster_names_keep_to_characters_envoy_tags_allow() -> None:
    assert cluster_name("shop", "v2") == "shop-v2"
    for rollout, version in [("shop.eu", "1.2.3"), ("a-b", "sha:9f"), ("x", "v 2")]:
        name = cluster_name(rollout, version)
        assert "." not in name and ":" not in name and " " not in name
    assert cluster_name("shop.eu", "1.2.3") == "shop_eu-1_2_3"


def test_a_mirror_cluster_is_the_version_cluster_with_the_mirror_suffix() -> None:
    assert mirror_cluster_name("shop.eu", "v2") == cluster_name("shop.eu", "v2") + MIRROR_SUFFIX == "shop_eu-v2-shadow"
