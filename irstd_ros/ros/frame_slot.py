"""A one-frame mailbox between the ROS callback and the inference worker.

The callback always overwrites the pending frame; the worker always takes the
newest. A frame overwritten before the worker took it is counted as dropped, so
latency stays bounded by one inference when frames arrive faster than the model.
"""
from __future__ import annotations

import threading
from typing import Any, Optional


class FrameSlot:
    def __init__(self):
        self._cv = threading.Condition()
        self._item: Optional[Any] = None
        self._closed = False
        self._woken = False
        self.dropped = 0
        self.received = 0

    def put(self, item: Any) -> None:
        with self._cv:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.received += 1
            self._cv.notify()

    def take(self, timeout: Optional[float] = None) -> Optional[Any]:
        """The newest frame, waiting up to ``timeout``; None on timeout, on :meth:`wake`, or once closed."""
        with self._cv:
            self._cv.wait_for(lambda: self._item is not None or self._closed or self._woken, timeout)
            item, self._item = self._item, None
            self._woken = False
            return item

    def wake(self) -> None:
        """Make a waiting :meth:`take` return (None if no frame is pending)."""
        with self._cv:
            self._woken = True
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._item = None
            self._cv.notify_all()

    def reopen(self) -> None:
        with self._cv:
            self._closed = False
