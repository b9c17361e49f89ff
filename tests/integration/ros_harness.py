"""Helpers for tests that run real nodes: a background executor, bounded waits, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.utilities import try_shutdown

from tests.waiting import wait_until

__all__ = ["DISCOVERY_TIMEOUT_S", "RosProbe", "SpunNodes", "spawn_crawler", "stop_process",
           "wait_until"]

DISCOVERY_TIMEOUT_S = 15.0


class SpunNodes:
    """ROS 2 nodes in a context of their own, spun by a SingleThreadedExecutor in a daemon thread.

    The constructor creates the context and inits rclpy on it; build the nodes on
    ``self.context``, then ``spin(*nodes)``. ``close()`` stops the executor, destroys the nodes
    (in the order given), shuts the context down and joins the thread.
    """

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._nodes: list[Node] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def spin(self, *nodes: Node) -> None:
        """Add ``nodes`` to the executor and start spinning it in the background."""
        for node in nodes:
            self.executor.add_node(node)
        self._nodes.extend(nodes)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001  (context torn down between ok() and spin)
                return

    def close(self) -> None:
        """Stop spinning, destroy the nodes, shut the context down."""
        self.executor.shutdown(timeout_sec=1.0)
        for node in self._nodes:
            node.destroy_node()  # type: ignore[no-untyped-call]
        try_shutdown(context=self.context)
        if self._thread.is_alive():  # not started if spin() never was
            self._thread.join(2.0)


class RosProbe(SpunNodes):
    """A node of the test's own, spun in a background thread, that records what it hears."""

    def __init__(self, name: str = "test_probe") -> None:
        super().__init__()
        self.node = Node(name, context=self.context)
        self.received: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self.spin(self.node)

    def record(self, msg_type: Any, topic: str, qos: Any = 10) -> None:
        """Keep every message on ``topic`` in ``received[topic]``."""
        self.received[topic] = []

        def keep(msg: Any) -> None:
            with self._lock:
                self.received[topic].append(msg)

        self.node.create_subscription(msg_type, topic, keep, qos)

    def last(self, topic: str) -> Any:
        """The newest message on ``topic``, or None."""
        with self._lock:
            return self.received[topic][-1] if self.received[topic] else None

    def count(self, topic: str) -> int:
        """How many messages arrived on ``topic``."""
        with self._lock:
            return len(self.received[topic])


def spawn_crawler(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``crawler ARGS`` in its own process, logging to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "crawler", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=dict(os.environ))


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGINT, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
