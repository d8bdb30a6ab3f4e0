"""Alembic migrations of the SQL store's schema, shipped as package data and applied on open."""
