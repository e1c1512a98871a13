"""Predictions from a kernel file: the engine behind ``ntk-l2 predict``.

Input keys: ``k_train_train`` (n, n), ``y_train`` (n, c); optional
``k_test_train`` (m, n), ``fx_train_0`` (n, c), ``fx_test_0`` (m, c), and for
the covariance over initializations ``nngp_train_train``, ``nngp_test_train``,
``nngp_test_test`` (all three). Output keys: ``times`` (T,), ``fx_train``
(T, n, c), ``fx_test`` (T, m, c) with test data, ``cov_test`` (T, m, m) with
NNGP blocks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ntk_l2.theory import (
    gradient_descent_l2_ode,
    gradient_descent_mse_l2,
    gradient_descent_mse_l2_discrete,
    gradient_descent_mse_l2_ensemble,
)

REQUIRED = ("k_train_train", "y_train")
OPTIONAL = ("k_test_train", "fx_train_0", "fx_test_0")
NNGP = ("nngp_train_train", "nngp_test_train", "nngp_test_test")


def load_kernel_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and key-check a kernel ``.npz`` (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except FileNotFoundError:
        raise ValueError(f"KERNEL: no such file: {path}") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"KERNEL: cannot read {path} as an .npz file ({err})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"{missing[0]}: required key missing from {path}")
    unknown = sorted(set(arrays) - set(REQUIRED + OPTIONAL + NNGP))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key in {path}; known keys: {', '.join(REQUIRED + OPTIONAL + NNGP)}")
    present = [k for k in NNGP if k in arrays]
    if present and len(present) != len(NNGP):
        absent = [k for k in NNGP if k not in arrays][0]
        raise ValueError(f"{absent}: needed with {present[0]} for the covariance (give all three NNGP blocks)")
    return arrays


def predict_from_arrays(
    arrays: dict[str, np.ndarray],
    times: np.ndarray,
    *,
    learning_rate: float,
    l2: float,
    degree: int,
    discrete: bool = False,
    loss: str = "mse",
) -> dict[str, np.ndarray]:
    """Run the matching solver and return the output arrays by key."""
    if loss not in ("mse", "xent"):
        raise ValueError(f"--loss: must be mse or xent, got {loss!r}")
    if loss == "xent" and discrete:
        raise ValueError("--discrete: the discrete map is for MSE only; drop --discrete for --loss xent")
    if discrete and "nngp_train_train" in arrays:
        raise ValueError("--discrete: the covariance over initializations is computed in continuous time only")
    if loss == "xent" and "nngp_train_train" in arrays:
        raise ValueError("nngp_train_train: the covariance over initializations is available for MSE only")
    args = (arrays["k_train_train"], arrays["y_train"], learning_rate, l2, degree)
    if loss == "xent":
        predict = gradient_descent_l2_ode(*args, loss="xent")
    elif discrete:
        predict = gradient_descent_mse_l2_discrete(*args)
    else:
        predict = gradient_descent_mse_l2(*args)
    with_test = "k_test_train" in arrays
    if "fx_test_0" in arrays and not with_test:
        raise ValueError("fx_test_0: given without k_test_train")
    out: dict[str, Any] = {"times": np.asarray(times, np.float64)}
    result = predict(
        times,
        arrays.get("fx_train_0", 0.0),
        arrays.get("fx_test_0") if with_test else None,
        arrays.get("k_test_train"),
    )
    if with_test:
        out["fx_train"], out["fx_test"] = result
    else:
        out["fx_train"] = result
    if "nngp_train_train" in arrays:
        if not with_test:
            raise ValueError("k_test_train: needed with the NNGP blocks for the test covariance")
        ens = gradient_descent_mse_l2_ensemble(
            arrays["k_train_train"], arrays["nngp_train_train"], arrays["y_train"], learning_rate, l2, degree
        )
        out["cov_test"] = ens(times, arrays["k_test_train"], arrays["nngp_test_train"], arrays["nngp_test_test"]).covariance
    return out
