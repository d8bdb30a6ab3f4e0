"""Running rollwise as a fleet: several controllers sharing a store under leases, flag servers in step.

The lease rules are pure (``core/leases.py``), the lease rows live in the store
(``adapters/stores/sql_leases.py``); this package holds what a person sees of the fleet.
"""
