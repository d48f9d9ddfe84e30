"""Distributed search with Keras Tuner's chief/worker mode.

Keras Tuner reads three environment variables: `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT` (where the chief's oracle listens) and
`KERASTUNER_TUNER_ID` (`chief` for the chief, a unique name per worker).
`tfl tune --chief HOST:PORT` / `--worker HOST:PORT` set them; setting them
yourself works too. The chief runs no trial: it serves the oracle over gRPC
until every worker has been told to stop, then prints the table and keeps
the best run. Workers ask it for trials, train them, and report back.
"""

from __future__ import annotations

import os
import socket
import typing

from tfl.errors import UsageError

IP, PORT, TUNER_ID = "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"


def parse_address(address: str, option: str) -> typing.Tuple[str, int]:
    host, sep, port = str(address).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{option} '{address}' is not HOST:PORT (e.g. {option} 127.0.0.1:8000)")
    return host.strip("[]"), int(port)


def configure(chief: typing.Optional[str] = None, worker: typing.Optional[str] = None,
              tuner_id: typing.Optional[str] = None) -> typing.Optional[str]:
    """Sets Keras Tuner's variables from `--chief`/`--worker`; returns `chief`, `worker` or None.

    Without either option the role comes from the variables already set (or
    None: a search on its own).
    """
    if chief and worker:
        raise UsageError("--chief and --worker exclude each other: a process is the chief or a worker")
    if chief or worker:
        host, port = parse_address(chief or worker, "--chief" if chief else "--worker")
        os.environ[IP], os.environ[PORT] = host, str(port)
        if chief:
            os.environ[TUNER_ID] = "chief"
        else:
            os.environ[TUNER_ID] = tuner_id or _worker_id(os.environ.get(TUNER_ID))
    elif tuner_id:
        os.environ[TUNER_ID] = tuner_id
    if IP not in os.environ:
        return None
    missing = [v for v in (PORT, TUNER_ID) if not os.environ.get(v)]
    if missing:
        raise UsageError(f"{IP} is set but {' and '.join(missing)} is not: set both (or use --chief/--worker)")
    parse_address(f"{os.environ[IP]}:{os.environ[PORT]}", PORT)
    return "chief" if "chief" in os.environ[TUNER_ID] else "worker"


def _worker_id(current: typing.Optional[str]) -> str:
    if current and "chief" not in current:
        return current
    # Unique per process; give --tuner-id to let a restarted worker pick up its unfinished trial.
    return f"worker-{socket.gethostname()}-{os.getpid()}"


def serve(oracle, poll: float = 0.5) -> None:
    """Serves `oracle` to the workers until the search is over (Keras Tuner's chief loop).

    Keras Tuner's own `start_server` checks every 20 s once stopping and never
    shuts the server down; this one polls often and stops the server cleanly.
    """
    from tfl import _compat

    address = f"{os.environ[IP]}:{os.environ[PORT]}"

    def cannot_bind():
        raise UsageError(f"--chief {address}: cannot listen there (port in use or not a local address)")

    _compat.serve_oracle(oracle, address, poll, cannot_bind)
