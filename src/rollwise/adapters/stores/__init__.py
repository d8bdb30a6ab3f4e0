"""Adapters at the edges: each implements one small protocol from rollwise.core.protocols."""
