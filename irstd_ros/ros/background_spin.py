"""Spin one rclpy node on its own executor in a daemon thread, so callers can block on their own work."""
from __future__ import annotations

import threading

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


class BackgroundSpin:
    """Starts spinning ``node`` at once; :meth:`close` stops the thread and destroys the node."""

    def __init__(self, node: Node, period_s: float = 0.05):
        self.node = node
        self._period_s = period_s
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(node)
        self._running = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._running:
            self._executor.spin_once(timeout_sec=self._period_s)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._executor.remove_node(self.node)
        self.node.destroy_node()
