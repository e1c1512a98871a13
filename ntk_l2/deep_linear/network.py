"""Deep linear networks y = W_L ⋯ W_1 x and their data loss.

Weights are a tuple (W_1, …, W_L) with W_l of shape (d_l, d_{l−1}); the
widths are (d_0 = d_in, d_1, …, d_L = d_out). A *scalar chain* has every
d_l = 1, so y = w_L ⋯ w_1 x. The data loss follows `derivations/conventions.md`:

    L(W) = ‖X Pᵀ − Y‖² / (2N),   P = W_L ⋯ W_1,   N = Y.size,

with X of shape (n, d_in) and Y of shape (n, d_out). The network is
positively homogeneous of degree L in its weights (`derivations/deep_linear.md`, DL0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike, NDArray

Weights = tuple  # tuple of (d_l, d_{l-1}) arrays, first layer first
Array = NDArray[np.float64]


@dataclass(frozen=True)
class DeepLinear:
    """The shape of a deep linear network.

    Attributes:
      widths: (d_in, d_1, …, d_out); the depth L is ``len(widths) − 1``.
    """

    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        widths = tuple(self.widths)
        if len(widths) < 2 or not all(isinstance(w, (int, np.integer)) and w >= 1 for w in widths):
            raise ValueError(f"widths: need at least two integers >= 1 (d_in, …, d_out), got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in widths))

    @classmethod
    def scalar_chain(cls, depth: int) -> DeepLinear:
        """y = w_L ⋯ w_1 x with scalar weights."""
        if not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(f"depth: must be an integer >= 1, got {depth!r}")
        return cls((1,) * (int(depth) + 1))

    @property
    def depth(self) -> int:
        """L, the number of weight layers (the homogeneity degree)."""
        return len(self.widths) - 1

    @property
    def is_scalar(self) -> bool:
        return all(w == 1 for w in self.widths)

    @property
    def n_params(self) -> int:
        return sum(a * b for a, b in zip(self.widths[1:], self.widths[:-1], strict=False))

    def init(self, seed: int = 0, scale: float = 1.0) -> Weights:
        """Gaussian weights with entries N(0, scale² / d_{l−1}) (variance-preserving for scale 1)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: must be finite and > 0, got {scale!r}")
        rng = np.random.default_rng(seed)
        return tuple(
            rng.standard_normal((d_out, d_in)) * scale / np.sqrt(d_in)
            for d_in, d_out in zip(self.widths[:-1], self.widths[1:], strict=False)
        )

    def check(self, weights: Sequence[ArrayLike], name: str = "weights") -> Weights:
        """``weights`` as float64 arrays, after checking their shapes against ``widths``."""
        weights = tuple(np.asarray(w, np.float64) for w in weights)
        expected = [(b, a) for a, b in zip(self.widths[:-1], self.widths[1:], strict=False)]
        got = [w.shape[-2:] if w.ndim >= 2 else w.shape for w in weights]
        if len(weights) != self.depth or any(tuple(g) != e for g, e in zip(got, expected, strict=False)):
            raise ValueError(f"{name}: expected layers of shapes {expected}, got {got}")
        if not all(np.all(np.isfinite(w)) for w in weights):
            raise ValueError(f"{name}: must be finite")
        return weights


def chain(values: ArrayLike) -> Weights:
    """Scalar-chain weights (w_1, …, w_L) as a tuple of (1, 1) layers."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"values: expected a 1-D array of the L scalar weights, got shape {values.shape}")
    return tuple(v.reshape(1, 1) for v in values)


def chain_values(weights: Sequence[ArrayLike]) -> Array:
    """The scalars (…, L) of scalar-chain weights (each layer (…, 1, 1))."""
    return np.stack([np.asarray(w)[..., 0, 0] for w in weights], axis=-1)


def product(weights: Sequence[ArrayLike]) -> Array:
    """P = W_L ⋯ W_1, batched over leading axes."""
    out = np.asarray(weights[0], np.float64)
    for w in weights[1:]:
        out = np.asarray(w, np.float64) @ out
    return out


def partial_products(weights: Sequence[ArrayLike]) -> tuple[list[Array], list[Array]]:
    """(A, B) with A_l = W_{l−1} ⋯ W_1 and B_l = W_L ⋯ W_{l+1} (identities at the ends), so P = B_l W_l A_l."""
    ws = [np.asarray(w, np.float64) for w in weights]
    lead = ws[0].shape[:-2]
    eye = lambda d: np.broadcast_to(np.eye(d), lead + (d, d))  # noqa: E731
    below = [eye(ws[0].shape[-1])]
    for w in ws[:-1]:
        below.append(w @ below[-1])
    above = [eye(ws[-1].shape[-2])]
    for w in reversed(ws[1:]):
        above.append(above[-1] @ w)
    return below, above[::-1]


def check_data(x: ArrayLike, y: ArrayLike, net: DeepLinear | None = None) -> tuple[Array, Array]:
    """(X, Y) as float64 arrays (n, d_in), (n, d_out); 1-D arrays are one feature."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"x, y: expected (n, d_in) and (n, d_out) with the same n >= 1, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x, y: must be finite")
    if net is not None and (x.shape[1] != net.widths[0] or y.shape[1] != net.widths[-1]):
        raise ValueError(
            f"x, y: the network maps {net.widths[0]} inputs to {net.widths[-1]} outputs, "
            f"got x with {x.shape[1]} and y with {y.shape[1]} columns"
        )
    return x, y


def loss(weights: Sequence[ArrayLike], x: ArrayLike, y: ArrayLike) -> Array:
    """L = ‖X Pᵀ − Y‖²/(2N), batched over the weights' leading axes."""
    x, y = check_data(x, y)
    r = np.einsum("nd,...od->...no", x, product(weights)) - y
    return 0.5 * np.sum(r**2, axis=(-2, -1)) / y.size


def loss_jax(weights: Sequence[jnp.ndarray], x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """`loss` for one network in JAX (differentiable)."""
    p = weights[0]
    for w in weights[1:]:
        p = w @ p
    return 0.5 * jnp.sum(jnp.square(x @ p.T - y)) / y.size


def least_squares_product(x: ArrayLike, y: ArrayLike) -> Array:
    """P* = argmin_P ‖X Pᵀ − Y‖² (minimum-norm), the product on the manifold of minima (no L2)."""
    x, y = check_data(x, y)
    return np.linalg.lstsq(x, y, rcond=None)[0].T


def min_loss(x: ArrayLike, y: ArrayLike) -> float:
    """The smallest data loss any product reaches: L at P*."""
    return float(loss((least_squares_product(x, y),), x, y))


def regression_data(
    n: int,
    d_in: int = 1,
    d_out: int = 1,
    *,
    label_noise: float = 0.0,
    teacher: ArrayLike | None = None,
    seed: int = 0,
    whiten: bool = True,
) -> tuple[Array, Array]:
    """A linear teacher task: X with n rows (whitened so XᵀX/n = I when ``whiten``),
    Y = X Tᵀ + label_noise · ξ with T a (d_out, d_in) teacher (default: Gaussian, unit scale)."""
    if not isinstance(n, (int, np.integer)) or n < max(1, d_in if whiten else 1):
        raise ValueError(f"n: need an integer >= d_in = {d_in} samples, got {n!r}")
    if not (np.isfinite(label_noise) and label_noise >= 0):
        raise ValueError(f"label_noise: must be finite and >= 0, got {label_noise!r}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in))
    if whiten:
        q, r = np.linalg.qr(x)
        x = q * np.sqrt(n) * np.sign(np.diag(r))
    t = (
        rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)
        if teacher is None
        else np.asarray(teacher, np.float64).reshape(d_out, d_in)
    )
    y = x @ t.T + label_noise * rng.standard_normal((n, d_out))
    return x, y
