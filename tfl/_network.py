"""Whether a download host answers, asked once and quickly.

Keras' weights and tfds' prepared datasets both come from Google Cloud
Storage. Without a network, Keras prints "Downloading data from ..." and
fails, and tfds retries for minutes; one TCP connection attempt with a short
timeout tells within seconds whether trying is worth it.
"""

from __future__ import annotations

import functools
import os
import socket

# Where keras.applications weights and tfds' prepared datasets are downloaded from.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)


def unreachable(host: str = DOWNLOAD_HOST[0], port: int = DOWNLOAD_HOST[1], timeout: float = 5.0):
    """None when `host:port` accepts a connection, else why not (one short phrase).

    `TFL_OFFLINE=1` answers "offline" without trying (a machine that must
    never download, and tests that must behave the same with or without a
    network).

    Examples:
        >>> unreachable("storage.googleapis.com")  # offline
        'storage.googleapis.com is unreachable (Name or service not known)'
    """
    if os.environ.get("TFL_OFFLINE", "").strip().lower() not in ("", "0", "false", "no"):
        return "TFL_OFFLINE is set"
    return _connect(host, port, timeout)


@functools.lru_cache(maxsize=8)
def _connect(host: str, port: int, timeout: float):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as e:
        return f"{host} is unreachable ({e.strerror or e})"
