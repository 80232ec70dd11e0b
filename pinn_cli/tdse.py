"""The time-dependent Schrödinger equation i psi_t = -psi_xx + V(x) psi as a training problem.

psi is complex: the network N(x, t) has two real outputs (Re, Im). On a time window [0, tau]
the trial function is

    psi(x, t) = s(x) + (t / tau) B(x) N(x, t),

s the state at the window's start (the initial state psi0, or the previous window's psi at its
end) and B(x) = 4 (x - lo)(hi - x) / L^2 the box envelope: the initial condition and the wall
zeros hold exactly for any parameters. The loss is the space-time integral of |r|^2 with
r = i psi_t + psi_xx - V psi, by a tensor Gauss-Legendre rule (x split at V's jumps, t on the
window), divided by tau and by the norm of s; the Levenberg-Marquardt stage solves for the
weighted residual vector sqrt(w) (Re r, Im r) (2 rows per point).

A value of psi anywhere needs s there, and s of window k is the chain of windows 0..k-1 at their
ends: `Windows` carries psi and psi_xx from window to window on any set of x.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .envelopes import box_envelope, times
from .model import TrialFunction
from .optim import LeastSquares, chunked_diagonal, with_row
from .quadrature import Box
from .resources import DIAGONAL_CHUNK


def envelope(interval: tuple[float, float], window: float, xt: jax.Array):
    """(t / tau) B(x) with its first and pure second derivatives along x and t, as a column
    (..., 1) to multiply the network's two outputs."""
    b, (bx,), (bxx,) = box_envelope(Box((interval,), ((),)), xt[..., :1])
    s = xt[..., 1] / window
    col = lambda a: a[..., None]  # noqa: E731
    return (
        col(s * b),
        (col(s * bx), col(b / window)),
        (col(s * bxx), col(jnp.zeros_like(b))),
    )


def fields(net: TrialFunction, interval, window, params, xt, start, start_xx):
    """psi, psi_t and psi_xx (..., 2) (Re, Im) at points xt (..., 2), given s and s_xx there."""
    n = net.network(params).taylor(*net.feature_taylor(xt))
    p, (_, p_t), (p_xx, _) = times(envelope(interval, window, xt), n)
    return start + p, p_t, start_xx + p_xx


def residual(p, p_t, p_xx, v):
    """r = i psi_t + psi_xx - V psi as (Re r, Im r): (..., 2)."""
    re = -p_t[..., 1] + p_xx[..., 0] - v * p[..., 0]
    im = p_t[..., 0] + p_xx[..., 1] - v * p[..., 1]
    return jnp.stack([re, im], axis=-1)


@dataclass(frozen=True, eq=False)
class TimeProblem:
    """One time window as plain arrays: points (x, t), weights, V, and s, s_xx at each point. A
    pytree like problem.Problem: the windows of a run share their compiled stages."""

    net: TrialFunction  # features over (x, t) and the network with two outputs
    interval: tuple[float, float]  # the spatial domain
    window: float  # tau, the window's length
    x: jax.Array  # (M, 2) points (x, t): the tensor rule, t varying fastest
    w: jax.Array  # (M,) weights of the space-time rule
    v: jax.Array  # (M,) V(x)
    start: jax.Array  # (M, 2) s(x) at each point (Re, Im)
    start_xx: jax.Array  # (M, 2)
    times: int  # nodes per window in t (the rule is (M / times) x times)
    norm0: float  # integral of |s|^2
    first_stage: str = "residual"
    slope_recovery: float = 0.0  # weight of Jagtap et al.'s S(a) in the loss (adaptive slopes)

    @property
    def residual_rows(self) -> int:
        return 2 * self.x.shape[0] + (self.slope_recovery > 0)

    def fields(self, params):
        f = fields(
            self.net, self.interval, self.window, params["net"], self.x, self.start, self.start_xx
        )
        return f

    def scale(self) -> float:
        return 1.0 / (self.window * self.norm0)

    def loss(self, kind: str = "residual") -> Callable:
        def loss(params):
            r = residual(*self.fields(params), self.v)
            total = self.scale() * jnp.sum(self.w[:, None] * r**2)
            if self.slope_recovery == 0:
                return total, {"residual": total}
            recovery = self.recovery(params)
            return total + recovery, {"residual": total, "slope_recovery": recovery}

        return loss

    def recovery(self, params) -> jax.Array:
        """The slope-recovery term of the loss, w S(a)."""
        return self.slope_recovery * self.net.slope_recovery(params["net"])

    def rescaled(self, params):
        """psi's scale is fixed by the start s(x) of the trial function: nothing to rescale."""
        return params

    def norms(self, params) -> jax.Array:
        """integral of |psi|^2 at each time node of the rule, (times,)."""
        p = self.fields(params)[0]
        dens = (self.w * jnp.sum(p**2, axis=-1)).reshape(-1, self.times)
        wt = self.w.reshape(-1, self.times)[0] / self.w.reshape(-1, self.times)[0].sum()
        return jnp.sum(dens, axis=0) / wt / self.window

    def diagnostics(self, params) -> dict[str, jax.Array]:
        """Logged with every block: the largest |norm(t) - norm(0)| on the rule's time nodes."""
        return {"norm_drift": jnp.max(jnp.abs(self.norms(params) - self.norm0))}

    def least_squares(self, unravel: Callable, chunk: int = DIAGONAL_CHUNK) -> LeastSquares:
        ls = least_squares(self, unravel, chunk)
        if self.slope_recovery > 0:  # the term w S(a) of the loss is the row sqrt(w S(a))
            return with_row(ls, lambda flat: jnp.sqrt(self.recovery(unravel(flat))))
        return ls


jax.tree_util.register_dataclass(
    TimeProblem,
    ["net", "x", "w", "v", "start", "start_xx", "norm0"],
    ["interval", "window", "times", "first_stage", "slope_recovery"],
)


def least_squares(problem: TimeProblem, unravel: Callable, chunk: int) -> LeastSquares:
    """r = sqrt(w / (tau |s|^2)) (Re r, Im r) per point, flattened (2M,); J row by row: each
    point's two residuals depend on the parameters through one network evaluation there."""
    sw = jnp.sqrt(problem.w * problem.scale())
    data = (problem.x, problem.v, problem.start, problem.start_xx)

    def point(flat, xt, v, s, s_xx):
        f = fields(problem.net, problem.interval, problem.window, unravel(flat)["net"], xt, s, s_xx)
        return residual(*f, v)

    rows = jax.vmap(jax.jacrev(point), in_axes=(None, 0, 0, 0, 0))

    def residual_vector(flat):
        return (sw[:, None] * point(flat, *data)).reshape(-1)

    def with_jacobian(flat):
        j = sw[:, None, None] * rows(flat, *data)
        return residual_vector(flat), j.reshape(-1, j.shape[-1])

    diagonal = chunked_diagonal(rows, data, problem.w * problem.scale(), chunk)
    return LeastSquares(residual_vector, with_jacobian, diagonal)
