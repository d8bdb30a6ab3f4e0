"""Migration scripts, oldest first (``v0001_initial`` creates every table)."""
