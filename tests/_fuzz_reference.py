"""What a correct result of a fuzzing case is: independent NumPy references, and the checks against them.

The references (written here, not taken from ``ntk_l2``): gradient flow with λ = 0 or k = 1 per eigenmode in
closed form, the discrete map by a plain step loop, the other flows and cross-entropy by a stiff (LSODA)
integration in the original basis, the NNGP covariance by propagating the joint kernel through the affine
map. `check_results` and `check_api_result` compare a result with the documented shapes, finiteness and the
reference, recording what they find in the `Stats` passed to them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.integrate

import ntk_l2

try:  # tests/ as a plain directory (pytest's default rootdir-relative import)
    from _fuzz_cases import INVALID, SLOTS, Case
except ImportError:  # pragma: no cover - tests/ made into a package
    from ._fuzz_cases import INVALID, SLOTS, Case

REF_TIME_MAX = 1e4  # references beyond this are ill-posed (null modes drift ∝ t · round-off)


REFERENCE_EVALUATIONS = 20_000  # LSODA on these tiny systems needs hundreds; more means a stiff reference


def _phi(rate: np.ndarray, t: float) -> np.ndarray:
    """(1 − e^{−rate t}) / rate, t where rate = 0."""
    rate = np.asarray(rate, np.float64)
    safe = np.where(rate > 0, rate, 1.0)
    return np.where(rate > 0, -np.expm1(-rate * t) / safe, t)


def _psd_part(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    evals, evecs = np.linalg.eigh((k + k.T) / 2)
    mu = np.maximum(evals, 0.0)
    return (evecs * mu) @ evecs.T, mu, evecs


def ref_flow_linear(k, y, f0, kxt, fs0, eta, lam, deg, t):
    """Gradient flow with a constant kernel (λ = 0 or k = 1), exactly, per eigenmode."""
    _, mu, v = _psd_part(k)
    norm = y.size
    d = deg * eta * lam if lam else 0.0
    a = eta * mu / norm
    r = a + d
    z0, zy = v.T @ f0, v.T @ y
    z = np.exp(-r * t)[:, None] * z0 + (a * _phi(r, t))[:, None] * zy
    fx = v @ z
    if kxt is None:
        return fx, None
    a_over_r = np.where(r > 0, a / np.where(r > 0, r, 1.0), 1.0)
    d_over_r = np.where(r > 0, d / np.where(r > 0, r, 1.0), 0.0)
    integral = (np.exp(-d * t) * _phi(a, t))[:, None] * (z0 - a_over_r[:, None] * zy) - (d_over_r * _phi(d, t))[
        :, None
    ] * zy
    fs = np.exp(-d * t) * fs0 - (eta / norm) * kxt @ (v @ integral)
    return fx, fs


def ref_ode(k, y, f0, kxt, fs0, eta, lam, deg, times, loss, probs=None):
    """General flow by LSODA in the original basis (MSE: any k; cross-entropy)."""
    kp, _, _ = _psd_part(k)
    n, c = y.shape
    m = 0 if kxt is None else kxt.shape[0]
    kx = kxt if kxt is not None else np.zeros((0, n))
    norm = y.size if loss == "mse" else n

    calls = [0]

    def rhs(t, state):
        calls[0] += 1
        if calls[0] > REFERENCE_EVALUATIONS:  # the reference itself is too stiff to follow: no reference
            raise ReferenceTooCostly
        f = state[: n * c].reshape(n, c)
        fs = state[n * c :].reshape(m, c)
        s = np.exp(-2.0 * (deg - 1) * eta * lam * t)
        if loss == "mse":
            grad = (f - y) / norm
        else:
            e = np.exp(f - f.max(axis=1, keepdims=True))
            grad = (e / e.sum(axis=1, keepdims=True) - probs) / norm
        return np.concatenate(
            [
                (-eta * s * kp @ grad - deg * eta * lam * f).ravel(),
                (-eta * s * kx @ grad - deg * eta * lam * fs).ravel(),
            ]
        )

    y0 = np.concatenate([f0.ravel(), fs0.ravel()])
    unique, back = np.unique(np.asarray(times, np.float64), return_inverse=True)
    if unique[-1] == 0:
        at_unique = np.tile(y0, (unique.size, 1))
    else:
        sol = scipy.integrate.solve_ivp(
            rhs,
            (0.0, unique[-1]),
            y0,
            method="LSODA",
            t_eval=unique,
            rtol=1e-11,
            atol=1e-13 * max(1.0, np.abs(y0).max(initial=0.0), np.abs(y).max()),
        )
        assert sol.success, sol.message
        at_unique = sol.y.T
    out = at_unique[back.ravel()]
    fx = out[:, : n * c].reshape(len(times), n, c)
    fs = out[:, n * c :].reshape(len(times), m, c)
    return fx, (fs if kxt is not None else None)


class ReferenceTooCostly(Exception):
    """The reference integration needed more than REFERENCE_EVALUATIONS right-hand sides."""


def ref_discrete(k, y, f0, kxt, fs0, eta, lam, deg, times):
    """The discrete map by a plain step loop in the original basis."""
    kp, _, _ = _psd_part(k)
    norm = y.size
    keep = 1.0 - eta * lam
    alpha = keep**deg
    rho = keep ** (2 * (deg - 1))
    kx = kxt if kxt is not None else np.zeros((0, k.shape[0]))
    f, fs = f0.copy(), fs0.copy()
    results = {}
    wanted = sorted(set(int(t) for t in times))
    s = 0
    for target in wanted:
        while s < target:
            beta = eta * keep ** (deg - 1) * rho**s / norm
            g = f - y
            f, fs = alpha * f - beta * kp @ g, alpha * fs - beta * kx @ g
            s += 1
        results[target] = (f.copy(), fs.copy())
    fx = np.stack([results[int(t)][0] for t in times])
    fsx = np.stack([results[int(t)][1] for t in times])
    return fx, (fsx if kxt is not None else None)


def ref_covariance(k, kxt, nngp, eta, lam, deg, t, norm):
    """Cov of f_*(t) for (f_X(0), f_*(0)) ~ N(0, joint NNGP), constant kernel (λ = 0 or k = 1)."""
    _, mu, v = _psd_part(k)
    d = deg * eta * lam if lam else 0.0
    a = eta * mu / norm
    # f_*(t) = e^{−dt} f_*(0) − (η/N) Θ_*X V diag(e^{−dt} φ(a, t)) Vᵀ f_X(0) + const
    l_x = -(eta / norm) * kxt @ (v * (np.exp(-d * t) * _phi(a, t))) @ v.T
    l_s = np.exp(-d * t) * np.eye(kxt.shape[0])
    lin = np.concatenate([l_x, l_s], axis=1)
    return lin @ nngp @ lin.T


def _ode_reference_affordable(k, norm, eta, lam, deg, times) -> bool:
    """Stiffness x length of the reference integration bounded (k = 0 grows the kernel by e^{2ηλt})."""
    mu_max = max(float(np.linalg.eigvalsh((k + k.T) / 2)[-1]), 0.0)
    growth = np.exp(min(2.0 * max(1 - deg, 0) * eta * lam * times.max(), 50.0))
    if deg == 0 and eta * lam * times.max() > 50:
        return False
    return eta * mu_max / norm * growth * times.max() <= 1e4 and eta * lam * deg * times.max() <= 1e4


def reference(case: Case) -> dict[str, np.ndarray] | None:
    """Expected outputs (NaN where no reference is known), or None."""
    if case.no_ref:
        return None
    try:
        a = {key: np.asarray(v, np.float64) for key, v in case.arrays.items() if key in SLOTS}
        k, y = a["k_train_train"], a["y_train"]
        n, c = y.shape
        if k.shape != (n, n) or n == 0 or c == 0:
            return None
        times = np.asarray(case.num["times"], np.float64).ravel()
        eta, lam, deg = float(case.num["lr"]), float(case.num["l2"]), int(case.num["degree"])
        f0 = a.get("fx_train_0", np.zeros((n, c)))
        f0 = np.broadcast_to(f0, (n, c)) if f0.ndim == 0 else f0
        kxt = a.get("k_test_train")
        fs0 = np.zeros((0 if kxt is None else kxt.shape[0], c)) if "fx_test_0" not in a else a["fx_test_0"]
        fs0 = np.broadcast_to(fs0, (kxt.shape[0], c)) if fs0.ndim == 0 and kxt is not None else fs0
        if case.solver == "ensemble":
            f0, fs0 = np.zeros((n, c)), np.zeros((kxt.shape[0], c))
    except Exception:
        return None
    if not all(np.all(np.isfinite(x)) for x in a.values()) or times.size == 0:
        return None
    if not np.isfinite(eta) or eta <= 0 or lam < 0 or not (np.all(np.abs(k) < 1e200) and np.all(np.abs(y) < 1e200)):
        return None
    if kxt is not None and (kxt.ndim != 2 or kxt.shape[1] != n or fs0.shape != (kxt.shape[0], c)):
        return None
    if f0.shape != (n, c):
        return None
    m = 0 if kxt is None else kxt.shape[0]
    out = {
        "fx_train": np.full((times.size, n, c), np.nan),
        "fx_test": np.full((times.size, m, c), np.nan) if kxt is not None else None,
        "cov_test": None,
    }
    ok = np.isfinite(times) & (times <= REF_TIME_MAX)
    if not ok.any():
        return out
    tt = times[ok]
    with np.errstate(all="ignore"):
        if case.solver == "discrete":
            if tt.max() > 5000:
                return out
            fx, fs = ref_discrete(k, y, f0, kxt, fs0, eta, lam, deg, tt)
        elif case.solver == "xent":
            if case.probs is None or not _ode_reference_affordable(k, n, eta, lam, deg, tt):
                return out
            try:
                fx, fs = ref_ode(k, y, f0, kxt, fs0, eta, lam, deg, tt, "xent", case.probs)
            except ReferenceTooCostly:
                return out
        elif lam == 0 or deg == 1:
            pairs = [ref_flow_linear(k, y, f0, kxt, fs0, eta, lam, deg, t) for t in tt]
            fx = np.stack([p[0] for p in pairs])
            fs = None if kxt is None else np.stack([p[1] for p in pairs])
        else:
            if not _ode_reference_affordable(k, y.size, eta, lam, deg, tt):
                return out
            try:
                fx, fs = ref_ode(k, y, f0, kxt, fs0, eta, lam, deg, tt, "mse")
            except ReferenceTooCostly:
                return out
    out["fx_train"][ok] = fx
    if kxt is not None:
        out["fx_test"][ok] = fs
    if "nngp_train_train" in a and case.solver in ("closed", "ensemble") and (lam == 0 or deg == 1) and kxt is not None:
        if (
            "nngp_test_test" in a
            and a["nngp_test_test"].shape == (m, m)
            and a["nngp_train_train"].shape == (n, n)
            and a["nngp_test_train"].shape == (m, n)
        ):
            joint = np.block(
                [[a["nngp_train_train"], a["nngp_test_train"].T], [a["nngp_test_train"], a["nngp_test_test"]]]
            )
            cov = np.full((times.size, m, m), np.nan)
            with np.errstate(all="ignore"):
                cov[ok] = np.stack([ref_covariance(k, kxt, joint, eta, lam, deg, t, y.size) for t in tt])
            out["cov_test"] = cov
    return out


def _expected_shapes(case: Case) -> dict[str, tuple] | None:
    """The documented output shapes of a CLI call (an API call returns the same arrays), or None."""
    try:
        y = np.asarray(case.arrays["y_train"])
        n, c = y.shape
        times = np.asarray(case.num["times"]).ravel()
        t_count = times.size
        shapes = {"times": (t_count,), "fx_train": (t_count, n, c)}
        if "k_test_train" in case.arrays:
            m = np.asarray(case.arrays["k_test_train"]).shape[0]
            shapes["fx_test"] = (t_count, m, c)
            if "nngp_train_train" in case.arrays:
                shapes["cov_test"] = (t_count, m, m)
        return shapes
    except Exception:
        return None


def check_results(stats, case: Case, res: dict[str, np.ndarray]) -> None:
    """Shapes as documented, finite, equal to the reference where one is known (findings go to `stats`)."""
    shapes = _expected_shapes(case)
    if case.kind == "cli" and shapes is not None:
        got = {key: v.shape for key, v in res.items()}
        if got != shapes:
            stats.violate(case, "wrong output keys/shapes", f"got {got}, documented {shapes}", ())
            return
        if "times" in res and not np.array_equal(res["times"], np.asarray(case.num["times"], np.float64)):
            stats.violate(case, "wrong times", f"{res['times']} vs {case.num['times']}", ())
    for key, v in res.items():
        if v is not None and (v.dtype.kind not in "fiub" or not np.all(np.isfinite(v))):
            if case.kind == "api":
                stats.violate(case, "non-finite result", f"{key} has non-finite values", (case.solver,))
            return
    try:
        ref = reference(case) if case.expect != INVALID else None
    except AssertionError as exc:  # the reference integration itself failed: no reference for this case
        stats.soft[("reference failed", str(exc)[:40])] = f"reference failed ({exc}):\n{case.describe()}"
        ref = None
    if ref is None:
        return
    checked = False
    for key, tol in (("fx_train", 1e-6), ("fx_test", 1e-6), ("cov_test", 1e-6)):
        want = ref.get(key)
        if want is None or key not in res or res[key].shape != want.shape:
            continue
        mask = np.isfinite(want)
        if not mask.any():
            continue
        if case.solver in ("xent", "ode_mse") or (
            case.solver != "discrete" and case.num["l2"] and case.num["degree"] != 1
        ):
            tol = 2e-6  # ODE against ODE
        got = res[key][mask]
        scale = 1.0 + float(np.max(np.abs(want[mask])))
        error = float(np.max(np.abs(got - want[mask]))) / scale
        checked = True
        if not error <= tol:
            stats.violate(
                case,
                "wrong values",
                f"{key}: max error {error:.3g} (relative to 1 + max|ref| = {scale:.3g})",
                (case.solver, key),
            )
    if checked:
        stats.counts["reference checked"] += 1


def check_api_result(stats, case: Case, result: Any) -> None:
    """The API's result: its type and the documented shapes, then `check_results`."""
    shapes = _expected_shapes(case)
    if shapes is None:
        return
    if case.scalar_t:
        shapes = {k: v[1:] for k, v in shapes.items()}
    if case.solver == "ensemble":
        if not isinstance(result, ntk_l2.Gaussian):
            stats.violate(case, "wrong result type", f"{type(result).__name__}", ())
            return
        got = {"fx_test": np.asarray(result.mean).shape}
        want = {"fx_test": shapes["fx_test"]}
        res = {"fx_test": np.asarray(result.mean, np.float64)}
        if "nngp_test_test" in case.arrays:
            want["cov_test"] = shapes["fx_test"][:-1] + shapes["fx_test"][-2:-1]
            got["cov_test"] = None if result.covariance is None else np.asarray(result.covariance).shape
            if result.covariance is not None:
                res["cov_test"] = np.asarray(result.covariance, np.float64)
    else:
        with_test = "k_test_train" in case.arrays
        if with_test and not (isinstance(result, tuple) and len(result) == 2):
            stats.violate(case, "wrong result type", f"{type(result).__name__}, expected (fx_train, fx_test)", ())
            return
        parts = result if with_test else (result,)
        res = {"fx_train": np.asarray(parts[0], np.float64)}
        got = {"fx_train": res["fx_train"].shape}
        want = {"fx_train": shapes["fx_train"]}
        if with_test:
            res["fx_test"] = np.asarray(parts[1], np.float64)
            got["fx_test"], want["fx_test"] = res["fx_test"].shape, shapes["fx_test"]
    if got != want:
        stats.violate(case, "wrong output keys/shapes", f"got {got}, documented {want}", (case.solver,))
        return
    if case.scalar_t:  # compare as a single time
        res = {k: v[None] for k, v in res.items()}
    check_results(stats, case, res)
