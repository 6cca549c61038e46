"""Whether a listening address is this machine only: the MCP server and the dashboard bind
loopback by default and ask for a token before listening anywhere wider."""

from __future__ import annotations

import ipaddress

MIN_TOKEN_CHARS = 16  # a guessable token guards nothing


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything
