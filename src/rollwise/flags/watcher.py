"""A polling file watcher: one stat() per tick, comparing (inode, size, mtime).

Polling rather than inotify because it behaves the same on every filesystem (bind mounts, NFS, config
maps whose files are swapped by rename), and a stat every ~150 ms costs nothing. The inode catches an
atomic `os.replace`, whose new file may have the same size and, on coarse clocks, the same mtime.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

FileStamp = tuple[int, int, int] | None


def file_stamp(path: str | Path) -> FileStamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class PollingWatcher:
    """Calls `tick()` every `interval` seconds on a daemon thread until `stop()`."""

    def __init__(self, tick: Callable[[], None], interval: float = 0.15, name: str = "rollwise-flags-watcher"):
        self._tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        last_failure: str | None = None
        while not self._stop.wait(self.interval):
            try:
                self._tick()
                last_failure = None
            except Exception as e:  # a bad tick must not kill the watcher; the next one retries
                failure = f"{type(e).__name__}: {e}".splitlines()[0]
                if failure != last_failure:  # one line per distinct failure, not a traceback every tick
                    log.error("flag watcher tick failed: %s", failure)
                    last_failure = failure
