"""When a refinement stage is over: its loss no longer falls, or its energy has settled; and
when an excited state's whole fit stalled (experiment trains it again).

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


# An excited state's refinement that ends this many times above the largest final loss of the
# states below it, without E having settled, stalled in a local minimum: the double well
# x^4 - 12 x^2 on [-5, 5] left states 2-4 at 2e-6 to 7e-6 in two of four seeds (E 3e-9, psi
# 3e-5), the states around them at 1e-14 to 1e-11, the same states from other seeds at 1e-11.
STALL_FACTOR = 1e4
# ... and a loss (integral r^2 / integral psi^2) within STALL_FLOOR of the state's energy scale
# squared never counts as stalled: the infinite well on [-3, 3] (seed 11) ended state 1 at
# 5.2e-16 with psi 9e-12, 1e4 times the ground state's loss at rounding, and trained it twice
# more for nothing (8 s); the stalls above sat at 1e-8 of their E^2 and above.
STALL_FLOOR = 1e-12


def state_stalled(result, below: list, scale: float = 0.0) -> bool:
    """Whether a state's fit (train.FitResult) stalled: completed, E not settled, its loss
    not still falling at the end of the budget (a refinement that ran on past it converges,
    slowly; `x^4 - 8 x^2` state 2 ended so at 1.5e-10, 1e4 times its states below, and two
    more attempts ended higher), above STALL_FLOOR * scale^2 (scale: the state's energy
    scale), and its final loss STALL_FACTOR times the largest of the states `below` it
    (their FitResults). A resumed state, whose fit ran no step, has no final loss: never
    stalled."""
    floors = [r.final_loss[0] for r in below if np.isfinite(r.final_loss[0])]
    loss = result.final_loss[0] if result.final_loss else float("nan")
    if not floors or not np.isfinite(loss) or result.status != "completed":
        return False
    if "E settled" in result.stop_reason or result.extended_by > 0:
        return False
    return loss > max(STALL_FACTOR * max(floors), STALL_FLOOR * scale**2)


def last_energy(result) -> float:
    """The learned E of a fit's last log row (0 where it logged none)."""
    last = result.history[-1] if result.history else {}
    energy = last.get("energy", 0.0)
    return energy if np.isfinite(energy) else 0.0
