"""When a refinement stage is over: its loss no longer falls, or its energy has settled.

Pure NumPy on the per-member numbers each compiled block reports; train._run_stage asks after
every block.
"""

from __future__ import annotations

import numpy as np


def stalled(earlier: list, since: int, total, tol: float, alive) -> bool:
    """A refinement stage stops once the loss is no lower, by a fraction > tol, than it was at
    the last block that ended at or before step `since`, for every member still training."""
    before = [loss for step, loss in earlier if step <= since]
    if not before:
        return False
    stalled = (total == 0.0) | ((before[-1] - total) <= tol * before[-1])
    return bool(np.all(stalled[alive]))


EXTEND_WINDOW = 100  # steps over which a refinement past its budget must lower the loss
EXTEND_FACTOR = 1.5  # by this factor


def still_falling(earlier: list, since: int, total, alive) -> bool:
    """The loss of some live member is below 1/EXTEND_FACTOR of what it was at the last block
    that ended at or before step `since` (EXTEND_WINDOW steps ago): the refinement is still
    converging at a useful rate, so a stage at its budget may run on (`optim.refine_extra`).
    The upper states of an oscillator end their 800 LM steps with the loss falling 7x per 200
    steps; states at rounding fall by a few percent."""
    before = [loss for step, loss in earlier if step <= since]
    if not before:
        return False
    falling = np.isfinite(total) & (total * EXTEND_FACTOR < before[-1])
    return bool(np.any(falling[alive]))


SETTLE_WINDOW = 50  # steps over which the Rayleigh quotient must hold still for _settled
AGREE_TOL = 1e-8  # relative agreement of the learned E and the quotient that _settled asks


def settled(energies: list, tol: float, alive) -> bool:
    """E has converged for every live member: the Rayleigh quotient moved by less than a
    relative tol over the last SETTLE_WINDOW steps, and the learned E agrees with it to
    AGREE_TOL. A plateau on the way to the state (the double well's LM rests ~60-200 steps
    near a wrong E) shows the quotient still moving by 1e-4 or more over the window and E and
    the quotient apart by 1e-6 or more, so it does not stop there. The learned E itself is not
    asked to hold still: once psi is accurate the residual pins E only to about the residual's
    size, and the accelerated LM leaves it wandering by 1e-12-1e-10 while the quotient is
    converged to rounding. The residual loss, which keeps falling as psi sharpens after E has
    settled, would not stop at all."""
    if tol <= 0 or not energies or "rayleigh" not in energies[-1][1]:
        return False
    step, now = energies[-1]
    before = [d for s, d in energies if s <= step - SETTLE_WINDOW]
    if not before:
        return False
    e, e_r, e_r_old = now["energy"], now["rayleigh"], before[-1]["rayleigh"]
    scale = np.abs(e_r) + 1e-300
    ok = (np.abs(e - e_r) <= max(tol, AGREE_TOL) * scale) & (np.abs(e_r - e_r_old) <= tol * scale)
    return bool(np.all(ok[alive]))
