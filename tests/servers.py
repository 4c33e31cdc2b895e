"""Starting and stopping the real servers some tests need (a Spark cluster, Spark Connect, MLflow)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log: Path, env, cwd=None) -> subprocess.Popen:
    """`cmd` in its own process group, its output into `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def stop(procs) -> None:
    """SIGTERM each (process, log)'s group, SIGKILL after 30 s."""
    for proc, _ in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc, _ in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _alive(procs, what: str, deadline: float, timeout: float) -> None:
    for proc, log in procs:
        assert proc.poll() is None, f"{what}: a process exited\n{Path(log).read_text(errors='replace')[-3000:]}"
    assert time.time() < deadline, f"{what} did not start in {timeout:.0f} s"


def wait_for_url(url: str, ready, procs, what: str, timeout: float = 120) -> None:
    """Until `ready(body)` of a GET of `url` is true; fails when a process of `procs` exits."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if ready(response.read()):
                    return
        except OSError:
            pass
        _alive(procs, what, deadline, timeout)
        time.sleep(0.5)


def wait_for_port(port: int, procs, what: str, timeout: float = 180) -> None:
    """Until 127.0.0.1:`port` accepts a connection; fails when a process of `procs` exits."""
    deadline = time.time() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            pass
        _alive(procs, what, deadline, timeout)
        time.sleep(0.5)


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 to 127.0.0.1:`target_port` that goes down for good the moment
    a client sends bytes holding `cut_on` (say, the path of a checkpoint's objects): that
    request is dropped, open connections close, and the port refuses new ones. A store that
    fails mid-write, at a point the test chooses.

        proxy = CuttableProxy(9000, cut_on=b"/checkpoints/step-")   # then point clients at proxy.url
    """

    def __init__(self, target_port: int, cut_on: bytes):
        import threading

        self.target_port, self.cut_on = target_port, cut_on
        self.cut = threading.Event()
        self._open: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.cut.is_set():
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while not self.cut.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if from_client and self.cut_on in data:
                    self.go_down()
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def go_down(self) -> None:
        """Refuse new connections and close the open ones."""
        self.cut.set()
        for sock in [self._listener, *self._open]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
