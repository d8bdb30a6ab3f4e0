"""The control surface: every write to a rollout (start, command, spec update) and the reads beside it.

``RolloutControl`` (``protocol.py``) is the one interface the CLI calls. ``LocalControl`` (``local.py``)
works on the store directly through ``ControlPlane`` (``plane.py``: store + engine + audit, the same
methods the API's routes call), as role ``local``; ``RemoteControl`` (``remote.py``) asks a running
``rollwise serve`` over HTTP with a token (``client.py``). Nothing is imported here, so ``rollwise --help``
loads none of it.
"""
