"""Run a peer script (shared/peers) and record its energy against the time since it started.

    <peers python> benchmarks/peer_trace.py --every 10 --out trace.csv SCRIPT [peer args...]

Runs under the peers' interpreter (PyTorch; nothing of pinn-run is imported). A global
optimiser hook of PyTorch (`register_optimizer_step_post_hook`) reads the trainable scalar
energy (the only zero-dimensional parameter both peers train) every --every optimiser steps
and appends `step,elapsed_s,E` to --out, flushed at once, so a run stopped by a time limit
keeps every row it wrote. elapsed_s counts from the process's start (the interpreter's and
PyTorch's import included), as pinn-run's metrics.csv does. The peer script itself runs
unchanged (`runpy`, as `__main__`).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time


def process_age() -> float:
    """Seconds since this process started, from /proc (0 where it cannot be read)."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


T_START = time.perf_counter() - process_age()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=10, help="optimiser steps between rows")
    ap.add_argument("--out", required=True, help="CSV written as the peer trains")
    ap.add_argument("script", help="the peer script")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="the peer script's arguments")
    args = ap.parse_args()

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    out = open(args.out, "w", buffering=1)
    out.write("step,elapsed_s,E\n")
    steps = [0]

    def record(optimizer, *_):
        steps[0] += 1
        if steps[0] % args.every:
            return
        scalars = [p for g in optimizer.param_groups for p in g["params"] if p.dim() == 0]
        if scalars:
            e = float(scalars[0].detach())
            out.write(f"{steps[0]},{time.perf_counter() - T_START:.6f},{e!r}\n")

    register_optimizer_step_post_hook(record)
    torch.set_grad_enabled(True)
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name="__main__")
    out.close()


if __name__ == "__main__":
    main()
