"""Process plumbing around a run: signals, the profiler window, the progress bar and console log.

Nothing here knows about training; each piece is a small context or callable that the
experiment wires into the fit loop's callbacks.
"""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

log = logging.getLogger("pinn_run")

EXIT_DIVERGED = 3
EXIT_FAILED = 4  # the run folder could not be written (a full disk, no permission)
EXIT_SUSPECT = 5  # a state failed a self-check (checks.strict=true)
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class ProfileWindow:
    """A JAX profiler trace of the first `steps` training steps, written into `directory`.

    Training runs in compiled blocks of train.log_every steps, so the trace stops at the first
    log record `steps` or more past `start` (a block boundary) and includes the first block's
    compilation. Writes directory/plugins/profile/<time>/<host>.xplane.pb (TensorBoard's profile
    plugin) and <host>.trace.json.gz (opens in https://ui.perfetto.dev).
    Does nothing when steps == 0.
    """

    def __init__(self, directory: Path, steps: int, start: int = 0):
        self.directory, self.steps, self.end = Path(directory), steps, start + steps
        self.active = False

    def __enter__(self) -> ProfileWindow:
        if self.steps > 0:
            import jax

            jax.profiler.start_trace(str(self.directory))
            self.active = True
        return self

    def after(self, step: int) -> None:
        if self.active and step >= self.end:
            self.stop()

    def stop(self) -> None:
        if self.active:
            import jax

            jax.profiler.stop_trace()
            self.active = False
            log.info("profiler trace of %d steps written to %s", self.steps, self.directory)

    def __exit__(self, *exc) -> None:
        self.stop()


class StopFlag:
    """SIGINT / SIGTERM set a flag; training checks it between compiled blocks."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return EXIT_SIGNAL.get(self.signum, 130)

    @contextmanager
    def installed(self):
        def handler(signum, _frame):
            self.signum = signum

        previous = {s: signal.signal(s, handler) for s in EXIT_SIGNAL}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class Progress:
    """A tqdm bar on a terminal; otherwise one log line per record (or per ensemble block)."""

    def __init__(self, n: int, total: int, start: int, enabled: bool, label: str = "state"):
        from tqdm import tqdm

        self.n, self.label = n, label
        self.bar = tqdm(total=total, disable=not (enabled and sys.stderr.isatty()), unit="step")
        self.bar.update(start)

    def __call__(self, records: list[dict]) -> None:
        last = records[-1]
        self.bar.update(last["step"] - self.bar.n)
        loss = min(r["loss"] for r in records)
        if "energy" not in last:  # a time window: its loss and how far the norm drifted
            self.bar.set_postfix(loss=f"{loss:.3e}", drift=f"{last['norm_drift']:.2e}")
            if self.bar.disable:
                log.info(
                    "%s %d step %d [%s] loss %.4e norm drift %.3e",
                    *(self.label, self.n, last["step"], last["stage"], loss, last["norm_drift"]),
                )
            return
        energy = float(np.median([r["energy"] for r in records]))
        self.bar.set_postfix(loss=f"{loss:.3e}", E=f"{energy:.10g}")
        if not self.bar.disable:
            return
        if len(records) == 1 and "member" not in last:
            log.info(
                "state %d step %d [%s] loss %.4e E %.12g E_R %.12g",
                self.n,
                last["step"],
                last["stage"],
                last["loss"],
                last["energy"],
                last["rayleigh"],
            )
            return
        log.info(
            "step %d [%s] %d members: loss %.4e (best) E %.12g (median) E_R %.12g (median)",
            last["step"],
            last["stage"],
            len(records),
            loss,
            energy,
            float(np.median([r["rayleigh"] for r in records])),
        )

    def close(self) -> None:
        self.bar.close()


def exit_now(code) -> None:
    """Exit as sys.exit(code) would, without the interpreter's teardown: first what the
    interpreter does first (join the non-daemon threads and run their exit hooks, which stop
    joblib's worker processes), then the atexit handlers (logging's flush, the trackers), then
    os._exit. Freeing every module and XLA's thread pools would add ~0.45 s to each command on
    2 cores, after all is written."""
    import atexit
    import os
    import threading

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code or 0)
