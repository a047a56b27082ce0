"""Runs of several processes: starting jax.distributed, and ending every process when one of them dies.

JAX's coordination service notices a dead process only after its heartbeat timeout, and then aborts the others
with a C++ fatal error; a process killed while the others wait in a collective would leave them blocked until
then. A watchdog beside it makes that quick and clear: process 0 holds one TCP connection to every other
process (its port passed through the coordination service's key-value store) and each end sends a byte a
second. A connection that closes (its process exited or was killed) or stays silent for `timeout_s` means a
process is gone: the survivor prints which one and how to resume, and exits with LOST_PROCESS_EXIT_CODE,
which closes its own connections, so the rest follow within moments. A process that ends normally says
goodbye first (`finish`); one that fails leaves at once (`leave`) rather than waiting for the others at
JAX's shutdown barrier, so the others are told instead of blocking.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import sys
import threading
import time
import traceback
from typing import NoReturn

import jax
import numpy as np

LOST_PROCESS_EXIT_CODE = 69  # EX_UNAVAILABLE of sysexits.h: a process of the run is gone.
DEFAULT_TIMEOUT_S = 60
INIT_TIMEOUT_S = 300  # How long processes wait for each other at the start (jax's default).
CONNECT_TIMEOUT_S = 30  # How long the watchdog's connections may take once they have.
_BEAT, _BYE = b".", b"!"
_INTERVAL_S = 1.0
_PORT_KEY = "animejax/watchdog_port"

_watchdog: _Watchdog | None = None


class FlagError(ValueError):
    """Distributed flags that do not go together, or an environment where none can be detected."""


def check_flags(coordinator_address: str | None, num_processes: int | None, process_id: int | None) -> None:
    """The explicit flags come all three or not at all, with values that fit; FlagError names what is wrong."""
    given = {"--coordinator_address": coordinator_address, "--num_processes": num_processes, "--process_id": process_id}
    missing = [name for name, value in given.items() if value is None]
    if 0 < len(missing) < len(given):
        present = [name for name in given if name not in missing]
        raise FlagError(
            f"{' and '.join(present)} given without {' and '.join(missing)}: pass all three "
            "(or none, with --distributed, to detect SLURM or Cloud TPU)."
        )
    if missing:
        return
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit():
        raise FlagError(f"--coordinator_address={coordinator_address!r}: expected host:port, e.g. 10.0.0.1:1234.")
    if num_processes < 1:
        raise FlagError(f"--num_processes={num_processes}: must be at least 1.")
    if not 0 <= process_id < num_processes:
        raise FlagError(
            f"--process_id={process_id}: must be in [0, {num_processes - 1}] for --num_processes={num_processes}."
        )


def initialize(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """jax.distributed.initialize with these flags (None: detected from SLURM, Open MPI or Cloud TPU), then the
    watchdog when there are several processes.

    Args:
      coordinator_address, num_processes, process_id: as jax.distributed.initialize; all or none (check_flags).
      timeout_s: a process silent this long counts as dead. JAX's own heartbeat timeout, the fallback should
        the watchdog itself stall, is twice that.
    """
    check_flags(coordinator_address, num_processes, process_id)
    if timeout_s <= 0:
        raise FlagError(f"--distributed_timeout_s={timeout_s}: must be positive.")
    # The training loop agrees on stopping by itself (train._AgreedStop); JAX's SIGTERM listener would only
    # swallow a SIGTERM that arrives before training starts.
    jax.config.update("jax_enable_preemption_service", False)
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            initialization_timeout=INIT_TIMEOUT_S,
            heartbeat_timeout_seconds=int(2 * timeout_s),
        )
    except ValueError as error:  # Nothing detected: "coordinator_address should be defined." and the like.
        raise FlagError(
            f"--distributed found no cluster to join ({error}); outside SLURM, Open MPI and Cloud TPU pass "
            "--coordinator_address, --num_processes and --process_id."
        ) from None
    if jax.process_count() > 1:
        global _watchdog
        _watchdog = _Watchdog(jax.process_index(), jax.process_count(), timeout_s)
        _watchdog.connect()


def finish() -> None:
    """Tells the other processes this one ends normally (its exit is then no failure) and stops watching them."""
    global _watchdog
    if _watchdog is not None:
        _watchdog.close()
        _watchdog = None


def leave(error: BaseException) -> None:
    """After `error` ended this process's work: in a run of several processes, reports it and exits at once.

    Exiting now, not at JAX's shutdown barrier where the others could never arrive (they wait for this
    process in a collective), closes the watchdog connections as the process ends, and so stops the others
    too. Does nothing when this process runs alone.
    """
    global _watchdog
    if _watchdog is None:
        return
    if isinstance(error, SystemExit) and error.code in (None, 0):
        finish()
        return
    status = 1
    if isinstance(error, SystemExit):
        if isinstance(error.code, int):
            status = error.code
        elif error.code is not None:
            _write_stderr(f"{error.code}\n")
    else:
        _write_stderr("".join(traceback.format_exception(error)))
    _watchdog.silence()  # Its connections close as this process ends: only then do the others learn of it.
    _watchdog = None
    _exit(status)


def all_processes(flag: bool) -> bool:
    """True when `flag` is true in every process (a collective: every process must call it at the same point)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


def smallest(value: int) -> int:
    """The smallest of every process's `value` (a collective, as all_processes)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(np.min(multihost_utils.process_allgather(np.asarray(value, np.int32))))


def process_zero_list(values: list[int]) -> list[int]:
    """Process 0's `values` in every process (a collective, as all_processes): one view where each process's own
    could differ, e.g. the checkpoint steps a shared filesystem shows them."""
    if jax.process_count() == 1:
        return list(values)
    from jax.experimental import multihost_utils

    count = int(multihost_utils.broadcast_one_to_all(np.asarray(len(values), np.int32)))
    padded = np.zeros(max(count, 1), np.int64)
    if jax.process_index() == 0:
        padded[:count] = values
    return [int(v) for v in np.asarray(multihost_utils.broadcast_one_to_all(padded))[:count]]


def interleave(rows: np.ndarray) -> np.ndarray:
    """Every process's `rows` (the same shape in each), merged row by row: process 0's first row, process 1's
    first row, ..., process 0's second row, ... (a collective, as all_processes).

    Each process holds every P-th image of the dataset from its index (the data pipeline's shards), so the
    first n rows of each, interleaved, are the dataset's first n * P images in their order.
    """
    if jax.process_count() == 1:
        return np.asarray(rows)
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(np.asarray(rows)))  # [P, n, ...]
    return gathered.swapaxes(0, 1).reshape((-1, *gathered.shape[2:]))


def _write_stderr(text: str) -> None:
    """Writes straight to file descriptor 2: safe from any thread, whatever Python's stream buffers hold."""
    os.write(2, text.encode("utf-8", "replace"))


def _exit(status: int) -> NoReturn:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _coordination():
    """(the coordination-service client, the coordinator's host) of jax.distributed; jax exposes neither."""
    from jax._src import distributed  # jax 0.10: no public accessor.

    state = distributed.global_state
    host = state.coordinator_address.rpartition(":")[0].strip("[]")
    return state.client, host


class _Watchdog:
    """The watchdog described in the module docstring: process 0 connected to each other process."""

    def __init__(self, me: int, count: int, timeout_s: float):
        self.me, self.count, self.timeout_s = me, count, timeout_s
        self.peers: dict[socket.socket, int] = {}  # Connection -> the process at its other end.
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._watch, name="animejax-watchdog", daemon=True)

    def connect(self) -> None:
        """Makes the connections, then starts watching them.

        jax.distributed.initialize has just gathered every process, so CONNECT_TIMEOUT_S is plenty; where a
        connection cannot be made (a firewall between hosts), that pair goes unwatched with a warning, and a
        death there is left to JAX's heartbeat timeout.
        """
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        try:
            client, host = _coordination()
            if self.me == 0:
                with _listener() as server:
                    client.key_value_set(_PORT_KEY, str(server.getsockname()[1]))
                    while len(self.peers) < self.count - 1:
                        server.settimeout(max(deadline - time.monotonic(), 0.001))
                        conn, _ = server.accept()
                        conn.settimeout(max(deadline - time.monotonic(), 0.001))
                        self.peers[conn] = _read_index(conn)
            else:
                port = int(client.blocking_key_value_get(_PORT_KEY, CONNECT_TIMEOUT_S * 1000))
                conn = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.001))
                conn.sendall(f"{self.me}\n".encode())
                self.peers[conn] = 0
        except Exception as error:  # OSError, the key-value store's timeout (a JaxRuntimeError), a changed jax.
            logging.warning(
                "Process %d could not connect its watchdog to every other process (%s): a process that dies may "
                "be noticed only after JAX's heartbeat timeout.",
                self.me,
                _first_line(error),
            )
        for conn in self.peers:
            conn.settimeout(_INTERVAL_S)
        logging.info("Watchdog of process %d watching process(es) %s", self.me, sorted(self.peers.values()))
        self.thread.start()

    def silence(self) -> None:
        """No report from now on (this process is leaving)."""
        with self.lock:
            self.closed = True

    def close(self) -> None:
        """Says goodbye to every peer (this process ends normally) and stops watching them."""
        with self.lock:
            self.closed = True
            for conn in self.peers:
                try:
                    conn.sendall(_BYE)
                    conn.close()
                except OSError:
                    pass

    def _lost(self, peer: int, why: str) -> None:
        with self.lock:
            if self.closed:
                return
            role = " (the coordinator)" if peer == 0 else ""
            _write_stderr(
                f"animejax: error: process {self.me} lost contact with process {peer}{role}: {why}. "
                f"Stopping this process too; relaunch the job (all {self.count} processes) to resume from the "
                "last checkpoint.\n"
            )
            _exit(LOST_PROCESS_EXIT_CODE)

    def _watch(self) -> None:
        selector = selectors.DefaultSelector()
        now = time.monotonic()
        heard = {conn: now for conn in self.peers}
        for conn in self.peers:
            selector.register(conn, selectors.EVENT_READ)
        next_beat = now
        while heard:
            ready = selector.select(timeout=_INTERVAL_S)
            if self.closed:
                return
            now = time.monotonic()
            for key, _ in ready:
                conn = key.fileobj
                try:
                    data = conn.recv(64)
                except OSError as error:
                    self._lost(self.peers[conn], f"its connection failed ({error})")
                    return
                if not data:
                    self._lost(self.peers[conn], "it exited or was killed")
                    return
                heard[conn] = now
                if _BYE in data:  # It ended normally: no longer watched.
                    selector.unregister(conn)
                    del heard[conn]
            for conn, last in heard.items():
                if now - last > self.timeout_s:
                    self._lost(self.peers[conn], f"nothing heard from it for {now - last:.0f} s")
                    return
            if now >= next_beat:
                next_beat = now + _INTERVAL_S
                failed = self._beat(heard)
                if failed:
                    self._lost(*failed)
                    return

    def _beat(self, conns) -> tuple[int, str] | None:
        """Sends a beat on each connection; (process, why) of the first that fails."""
        with self.lock:
            for conn in () if self.closed else conns:
                try:
                    conn.sendall(_BEAT)
                except OSError as error:
                    return self.peers[conn], f"its connection failed ({error})"
        return None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _read_index(conn: socket.socket) -> int:
    """The process index a new connection starts with (a decimal line; beats may follow it)."""
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(16)
        if not chunk:
            raise ConnectionError("a process closed its watchdog connection before naming itself")
        data += chunk
    return int(data.split(b"\n", 1)[0])


def _listener() -> socket.socket:
    """A TCP server socket on an ephemeral port of every interface (IPv4 and IPv6 where the host has both)."""
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("", 0))
