"""A threaded TCP proxy that injects network faults between a client and a real server.

    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for("postgres://postgres@127.0.0.1:5432/db")   # same URL, proxy's port
        proxy.delay(0.2)              # every chunk, both ways, waits 0.2 s before it is forwarded
        proxy.cut()                   # every open connection is closed at once (returns how many)
        proxy.down(); proxy.up()      # a server restart: cut all, then close new ones at once
        hit = proxy.cut_on(b"COMMIT") # one-shot: cut the first connection that sends b"COMMIT"
        hit.wait(5)                   # True once it fired
        proxy.pass_through()          # no delay, no pending triggers, up

Matching is done on the byte stream of one connection in one direction, so a pattern split across
two TCP reads still matches. A connection is cut by shutting both of its sockets down: each peer
sees end-of-file, as when a server process dies. Every thread is a daemon and `close()` (or leaving
the `with` block) joins them all.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Direction = Literal["to_server", "to_client"]
_DIRECTIONS: tuple[Direction, ...] = ("to_server", "to_client")
_CHUNK = 65536
# Seconds a cut connection is drained before its sockets are shut down hard.
LINGER = 0.5


@dataclass
class Trigger:
    """A one-shot `cut_on` rule. `fired` is set when it cut a connection."""

    pattern: bytes
    direction: Direction
    forward: bool
    fired: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> bool:
        return self.fired.wait(timeout)


class _Connection:
    """One client connection and its upstream socket, pumped by two threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self._lock = threading.Lock()
        self._dead = False
        self._pumps_left = 2
        self._reaper: threading.Timer | None = None
        # The last `len(pattern) - 1` bytes seen per direction, so that a pattern split across
        # two reads still matches.
        self._tails: dict[Direction, bytes] = {d: b"" for d in _DIRECTIONS}
        self.threads = [
            threading.Thread(
                target=self._pump,
                args=(client, server, "to_server"),
                name=f"fault-proxy-{proxy.port}-up",
                daemon=True,
            ),
            threading.Thread(
                target=self._pump,
                args=(server, client, "to_client"),
                name=f"fault-proxy-{proxy.port}-down",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def kill(self) -> None:
        """Cut the connection: each peer gets end-of-file after what was already forwarded.

        Both sockets are half-closed first (a FIN after the data already sent, so a COMMIT that
        was forwarded does reach the server), whatever still arrives is dropped, and `LINGER`
        seconds later both are shut down hard in case a peer never closes its side. The
        sockets are closed by the last pump to leave, never under a thread still using them.
        """
        with self._lock:
            if self._dead:
                return
            self._dead = True
            reaper = self._reaper = threading.Timer(LINGER, self.shut_hard)
        reaper.daemon = True
        reaper.name = f"fault-proxy-{self.proxy.port}-reaper"
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        reaper.start()

    def shut_hard(self) -> None:
        """Unblock both pumps now (their `recv` returns), dropping anything unread."""
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Cut, then shut down hard at once; for `FaultProxy.close`."""
        self.kill()
        self.shut_hard()
        if self._reaper is not None:
            self._reaper.cancel()

    @property
    def dead(self) -> bool:
        return self._dead

    def _pump(self, source: socket.socket, sink: socket.socket, direction: Direction) -> None:
        try:
            while True:
                try:
                    chunk = source.recv(_CHUNK)
                except OSError:
                    break
                if not chunk:
                    break
                if self._dead:
                    continue  # cut: drain what the peer still sends, forward nothing
                delay = self.proxy.current_delay
                if delay > 0:
                    time.sleep(delay)
                    if self._dead:
                        continue
                trigger = self.proxy._take_trigger(self, direction, chunk)
                if trigger is not None and not trigger.forward:
                    trigger.fired.set()
                    self.kill()
                    continue
                try:
                    sink.sendall(chunk)
                except OSError:
                    break
                if trigger is not None:
                    trigger.fired.set()
                    self.kill()
        finally:
            # One side closed (or failed): pass the end-of-file on, as a cut does.
            self.kill()
            self._pump_done()

    def _pump_done(self) -> None:
        with self._lock:
            self._pumps_left -= 1
            last = self._pumps_left == 0
            reaper = self._reaper
        if last:
            if reaper is not None:
                reaper.cancel()  # both pumps are gone: nothing left to unblock
            for sock in (self.client, self.server):
                with contextlib.suppress(OSError):
                    sock.close()
            self.proxy._forget(self)

    def matches(self, direction: Direction, chunk: bytes, pattern: bytes) -> bool:
        return pattern in self._tails[direction] + chunk

    def remember(self, direction: Direction, chunk: bytes, keep: int) -> None:
        self._tails[direction] = (self._tails[direction] + chunk)[-keep:] if keep > 0 else b""


class FaultProxy:
    """Listens on `listen_host`:<a free port> and forwards each connection to the target."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        connect_timeout: float = 5.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._triggers: list[Trigger] = []
        self._delay = 0.0
        self._down = False
        self._stopping = threading.Event()
        self.connections_seen = 0
        self.connections_refused = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.host: str = listen_host
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"fault-proxy-{self.port}-accept", daemon=True
        )
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if not self._started:
            self._started = True
            self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut every connection and join every thread."""
        self._stopping.set()
        if self._started:
            self._acceptor.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        threads: list[threading.Thread] = []
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.stop()
            threads.extend(connection.threads)
            if connection._reaper is not None:
                threads.append(connection._reaper)
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- addresses ---------------------------------------------------------------------------

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's (user, password, path kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{self.host}:{self.port}" if userinfo else f"{self.host}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- faults ------------------------------------------------------------------------------

    @property
    def current_delay(self) -> float:
        return self._delay

    def delay(self, seconds: float) -> None:
        """Hold every chunk, both ways, `seconds` before forwarding it (0 for none)."""
        self._delay = max(0.0, float(seconds))

    def cut(self) -> int:
        """Close every open connection at once; return how many were cut."""
        with self._lock:
            connections = [c for c in self._connections if not c.dead]
        for connection in connections:
            connection.kill()
        return len(connections)

    def down(self) -> int:
        """Behave like a stopped server: cut every connection, and close new ones at once until
        `up()`. Returns how many connections were cut."""
        with self._lock:
            self._down = True
        return self.cut()

    def up(self) -> None:
        with self._lock:
            self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    def cut_on(
        self, pattern: bytes, direction: Direction = "to_server", *, forward: bool = False
    ) -> Trigger:
        """Arm a one-shot rule: the first connection whose `direction` stream contains `pattern`
        is cut, before the chunk holding it is forwarded (`forward=False`) or just after."""
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, not {direction!r}")
        if not pattern:
            raise ValueError("pattern must not be empty")
        trigger = Trigger(pattern=pattern, direction=direction, forward=forward)
        with self._lock:
            self._triggers.append(trigger)
        return trigger

    def pass_through(self) -> None:
        """Forget every fault: no delay, no pending trigger, up."""
        with self._lock:
            self._triggers.clear()
            self._down = False
        self._delay = 0.0

    def threads_alive(self) -> list[threading.Thread]:
        """This proxy's threads still running (none once `close()` has returned)."""
        prefix = f"fault-proxy-{self.port}-"
        return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]

    @property
    def active_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections if not c.dead)

    # -- internals ---------------------------------------------------------------------------

    def _take_trigger(
        self, connection: _Connection, direction: Direction, chunk: bytes
    ) -> Trigger | None:
        with self._lock:
            keep = max((len(t.pattern) - 1 for t in self._triggers), default=0)
            found = None
            for trigger in self._triggers:
                if trigger.direction == direction and connection.matches(
                    direction, chunk, trigger.pattern
                ):
                    found = trigger
                    break
            if found is not None:
                # One-shot: removed under the lock, so two connections can't both fire it.
                self._triggers.remove(found)
            connection.remember(direction, chunk, keep)
            return found

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(timeout=0.05):
                    continue
                try:
                    client, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        client.setblocking(True)
        with self._lock:
            refuse = self._down or self._stopping.is_set()
            if refuse:
                self.connections_refused += 1
        if refuse:
            _drop(client)
            return
        try:
            server = socket.create_connection(
                (self.target_host, self.target_port), timeout=self.connect_timeout
            )
        except OSError:
            with self._lock:
                self.connections_refused += 1
            _drop(client)
            return
        server.settimeout(None)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(self, client, server)
        with self._lock:
            if self._down or self._stopping.is_set():
                self.connections_refused += 1
                refuse = True
            else:
                self.connections_seen += 1
                self._connections.add(connection)
        if refuse:
            _drop(client)
            _drop(server)
            return
        connection.start()


def _drop(sock: socket.socket) -> None:
    """Close at once with a reset, as a port nobody listens on would answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
