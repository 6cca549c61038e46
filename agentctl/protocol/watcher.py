"""Wake-ups when files appear in a directory: the only module that imports watchdog.

Events are only hints. inotify drops events when its queue overflows, so whoever waits here
must also rescan on its own schedule; `DirectoryWatcher.wait` returns on an event or after the
poll interval, whichever comes first. If the native observer cannot start (no inotify, too many
watches), the watcher degrades to pure polling and says so.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from watchdog.events import (
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._event.set()


class DirectoryWatcher:
    """Sets an event when a file is created in (or moved into) a directory.

    With `modifications`, writes to a file in it wake too (for following an appended file).
    """

    def __init__(
        self, path: Path, *, wake: threading.Event | None = None, modifications: bool = False
    ) -> None:
        self.path = path
        self.modifications = modifications
        self.wake = wake if wake is not None else threading.Event()
        self.native = False
        self._observer: object | None = None

    def start(self) -> DirectoryWatcher:
        """Start watching; fall back to polling (native=False) if the observer fails."""
        observer = Observer()
        try:
            # Only creations wake us: our own claims unlink files from the directory and would
            # otherwise wake us once per message for nothing.
            kinds: list[type[FileSystemEvent]] = [FileCreatedEvent, FileMovedEvent]
            if self.modifications:
                kinds.append(FileModifiedEvent)
            observer.schedule(_Wake(self.wake), str(self.path), recursive=False, event_filter=kinds)
            observer.daemon = True
            observer.start()
        except OSError as exc:
            log.warning("cannot watch %s natively (%s); polling instead", self.path, exc)
            return self
        self._observer = observer
        self.native = True
        return self

    def clear(self) -> None:
        """Forget past wake-ups. Call it *before* scanning, so no event slips between the scan
        and the next `wait`."""
        self.wake.clear()

    def wait(self, timeout_s: float) -> bool:
        """Block until a wake-up or `timeout_s`; True if woken."""
        return self.wake.wait(timeout_s)

    def stop(self) -> None:
        """Stop the observer thread."""
        observer = self._observer
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=2)  # type: ignore[attr-defined]
            self._observer = None

    def __enter__(self) -> DirectoryWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
