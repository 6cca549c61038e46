"""uvicorn's server, taught that the dashboard's event streams never end by themselves."""

from __future__ import annotations

from types import FrameType

import uvicorn

from agentctl.ui.events import Broadcaster


class StoppingServer(uvicorn.Server):
    """Ends the open event streams as soon as it is asked to exit (Ctrl-C, SIGTERM).

    uvicorn waits for every open response before it stops; a page's stream would be waited on
    for the whole grace period, then cancelled, with an ERROR and a traceback per stream.
    """

    def __init__(self, config: uvicorn.Config, broadcaster: Broadcaster) -> None:
        super().__init__(config)
        self.broadcaster = broadcaster

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's signal handler: the streams end (from the event loop), then uvicorn stops."""
        self.broadcaster.end_streams_soon()
        super().handle_exit(sig, frame)
