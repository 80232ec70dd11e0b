"""Singular functions of the Laplacian at a corner where a jump of V is not separable.

Where a jump of V along x crosses one along y and the mixed difference of V over the four
quadrants is not zero (a square well's corners), -lap psi = (E - V) psi has a quadrant-shaped
source and psi has r^2 log r, r^3 log r, ... terms that no smooth function of x, y and the line
features (x - b)_+^2 carries. The trial function takes these functions as extra inputs
(model.TrialFunction, `Box.corners`); docs/physics.md "Corners" derives them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .nonlinear import Jet

CORNER_ORDERS = 4  # corner functions up to r^4 log r: psi's singular terms to that order
PER_CORNER = 2 * CORNER_ORDERS - 3  # w_2, then w_k and m_k for each k >= 3


def corner_features(u: jax.Array, v: jax.Array) -> list[Jet]:
    """The singular functions of the Laplacian at a corner of the quadrant Q = {u < 0, v < 0},
    each with its first and pure second derivatives along u and v: for F_k = z^k log z
    (z = u + i v, principal log; harmonic off the cut u < 0, v = 0),

        w_k = Im F_k + 2 pi u^k [Q]          lap w_k = 2 pi k (k - 1) u^(k-2) [Q]    (k >= 2)
        m_k = Re F_k - 2 pi k u^(k-1) v [Q]  lap m_k = -2 pi k (k-1)(k-2) u^(k-3) v [Q]  (k >= 3)

    The added polynomials mend the cut, so each is C1 (w_2) or smoother. Where V's jump at a
    corner is not separable, -lap psi = (E - V) psi has a source (V_Q psi) [Q] whose Taylor terms
    psi_c, u psi_u, v psi_v, u^2 psi_uu / 2, u v psi_uv these functions answer: psi = smooth +
    (kink features) + c w_2 + c' w_3 + c'' m_3 + ... up to CORNER_ORDERS (the v^2 term gets no
    function of its own). Another quadrant's source differs from Q's by sources along whole
    lines, which the (x - b)_+^2 features carry. Their pure second derivatives are
    bounded; only the mixed one, which the Laplacian does not need, grows like log r."""
    z = u + 1j * v
    origin = (u == 0.0) & (v == 0.0)
    log = jnp.log(jnp.where(origin, 1.0 + 0j, z))  # every term below -> 0 at z = 0 but log z
    inside = jnp.where((u < 0.0) & (v < 0.0), 2.0 * jnp.pi, 0.0)
    out = []
    for k in range(2, CORNER_ORDERS + 1):
        f = z**k * log
        f1 = k * z ** (k - 1) * log + z ** (k - 1)
        f2 = jnp.where(origin, 0.0, k * (k - 1) * z ** (k - 2) * log + (2 * k - 1) * z ** (k - 2))
        # d/du F = F', d/dv F = i F', d2/du2 F = F'', d2/dv2 F = -F''
        out.append(
            (
                f.imag + inside * u**k,
                (f1.imag + inside * k * u ** (k - 1), f1.real),
                (f2.imag + inside * k * (k - 1) * u ** (k - 2), -f2.imag),
            )
        )
        if k >= 3:
            out.append(
                (
                    f.real - inside * k * u ** (k - 1) * v,
                    (
                        f1.real - inside * k * (k - 1) * u ** (k - 2) * v,
                        -f1.imag - inside * k * u ** (k - 1),
                    ),
                    (f2.real - inside * k * (k - 1) * (k - 2) * u ** (k - 3) * v, -f2.real),
                )
            )
    return out
