"""Compiling programs off the main thread: a signal or a stop request is answered at once
while XLA compiles (`compile_interruptibly`), and a later stage's program compiles while an
earlier one trains (`Ahead`)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Interrupted(Exception):
    """A stop was requested while XLA compiled a block."""


def compile_interruptibly(lowered, stop_requested: Callable[[], bool], poll_s: float = 0.05):
    """`lowered.compile()` in a worker thread, while this thread waits in Python: a signal's
    handler then runs at once (it cannot while this thread is inside XLA), and a stop request
    raises Interrupted within `poll_s` instead of after the compilation. The abandoned
    compilation finishes (or dies with the process) in its daemon thread."""
    box: dict = {}

    def work():
        try:
            box["compiled"] = lowered.compile()
        except BaseException as err:  # handed to the caller
            box["error"] = err

    worker = threading.Thread(target=work, name="xla-compile", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll_s)
        if worker.is_alive() and stop_requested():
            raise Interrupted
    if "error" in box:
        raise box["error"]
    return box["compiled"]


class Ahead:
    """A program compiled in a daemon thread of its own; an error is handed to `result`."""

    def __init__(self, make: Callable):
        self._box: dict = {}
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(make,), name="xla-ahead", daemon=True).start()

    def _run(self, make: Callable) -> None:
        try:
            self._box["compiled"] = make()
        except BaseException as err:  # handed to whoever waits
            self._box["error"] = err
        finally:
            self._done.set()

    def wait(self) -> None:
        self._done.wait()

    def result(self, stop_requested: Callable[[], bool], poll_s: float = 0.05):
        """The compiled program; raises Interrupted when a stop is requested first."""
        while not self._done.wait(poll_s):
            if stop_requested():
                raise Interrupted
        if "error" in self._box:
            raise self._box["error"]
        return self._box["compiled"]
