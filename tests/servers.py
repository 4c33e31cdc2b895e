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
