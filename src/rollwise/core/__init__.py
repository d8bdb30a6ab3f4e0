"""The pure core: domain model, protocols and the rollout engine. No I/O lives here."""
