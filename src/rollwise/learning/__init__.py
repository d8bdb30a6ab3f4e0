"""Learning from past releases: every finished rollout teaches the next one, without giving up validity.

Pure code (no I/O): ``priors`` fits the sequential judge's mixture prior on a service's past
regressions, shrunk toward all services'; the engine fits it once when a rollout begins, from what
its ``ReleaseHistory`` store kept, so the false-rollback guarantee holds.
"""
