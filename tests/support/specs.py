"""Rollout specs the engine, CLI and judge tests share: a service with two versions and no data plane."""

from __future__ import annotations

SHOP = """
name: shop
service: shop
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
traffic: {router: none}
strategy:
"""
"""The head of a spec for rollout ``shop`` (v1 -> v2, router ``none``); a test appends its strategy."""
