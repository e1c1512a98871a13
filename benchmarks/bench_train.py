"""Speed of finite-width training (`ntk_l2.finite.train.train`), each target measured in one run.

    python benchmarks/bench_train.py [--small]

1. One full-batch gradient-descent step (with L2) of the fully connected ReLU
   network, 3 hidden layers of width 2048, no biases, input 784, 10 outputs,
   512 samples, float32, as `train` runs it. Target: achieved FLOP/s >= 50% of
   the machine's float32 matrix-multiply rate measured with JAX (jit'd
   `jnp.dot` of square float32 matrices, best of several; numpy's rate is
   recorded for information).

   FLOPs of one step, counted analytically with layer sizes (a_l, b_l) and
   n samples (a multiply-add = 2 FLOPs):
     forward                       2 n Σ_l a_l b_l
     weight gradients              2 n Σ_l a_l b_l
     activation gradients          2 n Σ_{l>=2} a_l b_l  (the input's gradient
                                   is not needed and is not computed)
   i.e. 2 n (3 Σ_l a_l b_l − a_1 b_1); the ReLUs, the loss, the NTK scalings
   and the L2 update (O(n·width + #params)) are left out (< 0.1%).
   Step time: `train` with record_steps=(0, S) for two values of S, the
   difference of the (best-of) wall times divided by the difference of S; this
   removes the per-call overhead (initialization, JIT compilation, the two
   records). `train` runs a single seed without `jax.vmap` (a vmap over one
   seed makes XLA transpose the weights every step). For the diagnosis, the
   same step is also timed hand-written (jit + fori_loop over exactly
   train.py's update, with and without `jax.vmap` over a single seed).

2. An 8-seed vmapped ensemble (`seeds=range(8)`) at width 512, 512 samples, vs
   8 sequential single-seed calls with the same number of steps, both after a
   warm-up call of each shape. Target: speedup >= 2. Note that `train`
   re-jits its inner functions on every call, so a warm-up does not remove
   the per-call compilation. The per-step (steady-state) ratio, from the same
   two-S difference, is recorded too, and so is the hand-written comparison
   (vmapped 8-seed loop vs 8 x an unbatched one-seed loop, no per-call cost).

3. If PyTorch is importable: the same step (float32, no biases, W ~ N(0, 1)
   scaled by σ_w/√fan_in, SGD with weight decay = L2) on the CPU, and the ratio
   JAX step time / PyTorch step time. Otherwise recorded as skipped.

Another process may load the machine: every timing is a minimum over
interleaved repeats, and the load average is recorded.
Prints one line per comparison and writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntk_l2.common.io import save_json
from ntk_l2.finite.train import TrainConfig, train
from ntk_l2.networks.arch import fully_connected

INPUT_DIM, OUT_DIM, DEPTH = 784, 10, 3
LEARNING_RATE, L2 = 0.5, 1e-2


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized Gaussian inputs (n, 784) and one-hot − 0.1 targets (n, 10), float32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, INPUT_DIM))
    x = (x - x.mean(0)) / x.std(0)
    y = np.eye(OUT_DIM)[rng.integers(0, OUT_DIM, n)] - 0.1
    return x.astype(np.float32), y.astype(np.float32)


def layer_sizes(width: int) -> list[tuple[int, int]]:
    dims = [INPUT_DIM] + [width] * DEPTH + [OUT_DIM]
    return list(itertools.pairwise(dims))


def step_flops(width: int, n: int) -> dict:
    sizes = layer_sizes(width)
    macs = sum(a * b for a, b in sizes)
    forward = 2 * n * macs
    weight_grads = 2 * n * macs
    act_grads = 2 * n * (macs - sizes[0][0] * sizes[0][1])
    return {
        "forward": forward,
        "weight_gradients": weight_grads,
        "activation_gradients": act_grads,
        "total": forward + weight_grads + act_grads,
        "n_params": macs,
        "count": "2n(3*sum_l a_l b_l - a_1 b_1): forward + weight grads + activation grads except the input's",
    }


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- matmul rate


def matmul_rates(m: int, repeats: int) -> dict:
    rng = np.random.default_rng(1)
    a_np = rng.standard_normal((m, m), dtype=np.float32)
    b_np = rng.standard_normal((m, m), dtype=np.float32)
    a, b = jnp.asarray(a_np), jnp.asarray(b_np)
    dot = jax.jit(jnp.dot)
    assert dot(a, b).dtype == jnp.float32
    dot(a, b).block_until_ready()
    a_np @ b_np
    t_jax, t_np = [], []
    for _ in range(repeats):  # interleaved
        t_jax.append(timed(lambda: dot(a, b).block_until_ready()))
        t_np.append(timed(lambda: a_np @ b_np))
    flops = 2.0 * m**3
    return {
        "m": m,
        "jax_s": min(t_jax),
        "numpy_s": min(t_np),
        "jax_flops": flops / min(t_jax),
        "numpy_flops": flops / min(t_np),
    }


# --------------------------------------------------------------------------- library step


def train_call(arch, x, y, steps: int, seeds: tuple[int, ...]) -> float:
    cfg = TrainConfig(learning_rate=LEARNING_RATE, l2=L2, steps=steps, record_steps=(0, steps), float64=False)
    t0 = time.perf_counter()
    res = train(arch.init_fn, arch.apply_fn, x, y, cfg, seeds=seeds, progress=False)
    elapsed = time.perf_counter() - t0
    if res.fx_train.dtype != np.float32:
        raise RuntimeError(f"expected float32 records, got {res.fx_train.dtype}")
    if res.diverged.any():
        raise RuntimeError("a benchmark run diverged; lower LEARNING_RATE")
    return elapsed


def handwritten(arch, x, y, steps: int, n_seeds: int | None):
    """train.py's full-batch update, jit + fori_loop, on one network (n_seeds=None) or
    vmapped over n_seeds networks with traced loop bounds, as train.py's `advance`."""
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def data_loss(p):
        return 0.5 * jnp.sum(jnp.square(arch.apply_fn(p, xj) - yj)) / yj.size

    grad_fn = jax.grad(data_loss)

    def step(_, p):
        g = grad_fn(p)
        return jax.tree_util.tree_map(lambda pi, gi: (1 - LEARNING_RATE * L2) * pi - LEARNING_RATE * gi, p, g)

    def init(k):
        return arch.init_fn(k, (-1, x.shape[1]))[1]

    if n_seeds is None:
        params = init(jax.random.PRNGKey(0))
        run = jax.jit(partial(jax.lax.fori_loop, 0, steps, step))

        def call():
            return jax.block_until_ready(run(params))
    else:
        params = jax.vmap(init)(jnp.stack([jax.random.PRNGKey(s) for s in range(n_seeds)]))
        run = jax.jit(lambda p, start, stop: jax.vmap(lambda q: jax.lax.fori_loop(start, stop, step, q))(p))

        def call():
            return jax.block_until_ready(run(params, 0, steps))

    call()  # compile
    return call


def bench_step(width: int, n: int, s_pair: tuple[int, int], repeats: int, matmul_m: int) -> dict:
    arch = fully_connected(DEPTH, width, OUT_DIM)
    x, y = data(n)
    s1, s2 = s_pair
    train_call(arch, x, y, s1, (0,))  # warm-up (imports, first-time tracing)
    hand = handwritten(arch, x, y, s1, None)
    hand_v = handwritten(arch, x, y, s1, 1)
    t = {"mm": [], "jax_mm": [], "s1": [], "s2": [], "hand": [], "hand_vmap": []}
    mm = []
    for _ in range(repeats):  # interleaved so that a load change hits all alike
        mm.append(matmul_rates(matmul_m, 10))
        t["s1"].append(train_call(arch, x, y, s1, (0,)))
        t["s2"].append(train_call(arch, x, y, s2, (0,)))
        t["hand"].append(timed(hand))
        t["hand_vmap"].append(timed(hand_v))
    mm.append(matmul_rates(matmul_m, 10))
    jax_rate = max(r["jax_flops"] for r in mm)
    np_rate = max(r["numpy_flops"] for r in mm)
    flops = step_flops(width, n)
    per_step = (min(t["s2"]) - min(t["s1"])) / (s2 - s1)
    hand_step, hand_v_step = min(t["hand"]) / s1, min(t["hand_vmap"]) / s1
    out = {
        "width": width,
        "n": n,
        "depth": DEPTH,
        "input_dim": INPUT_DIM,
        "out_dim": OUT_DIM,
        "dtype": "float32",
        "steps_pair": [s1, s2],
        "repeats": repeats,
        "flops_per_step": flops,
        "matmul": {
            "m": matmul_m,
            "jax_float32_flops": jax_rate,
            "numpy_float32_flops": np_rate,
            "jax_float32_flops_per_round": [r["jax_flops"] for r in mm],
        },
        "train_s": {str(s1): min(t["s1"]), str(s2): min(t["s2"])},
        "train_s_all": {str(s1): t["s1"], str(s2): t["s2"]},
        "step_s": per_step,
        "per_call_overhead_s": min(t["s1"]) - s1 * per_step,
        "achieved_flops": flops["total"] / per_step,
        "fraction_of_matmul": flops["total"] / per_step / jax_rate,
        "handwritten_step_s": hand_step,
        "handwritten_fraction": flops["total"] / hand_step / jax_rate,
        "handwritten_vmap1_step_s": hand_v_step,
        "handwritten_vmap1_fraction": flops["total"] / hand_v_step / jax_rate,
        "target": "fraction_of_matmul >= 0.5",
    }
    out["passed"] = out["fraction_of_matmul"] >= 0.5
    return out


# --------------------------------------------------------------------------- ensemble


def bench_ensemble(width: int, n: int, n_seeds: int, s_pair: tuple[int, int], repeats: int) -> dict:
    arch = fully_connected(DEPTH, width, OUT_DIM)
    x, y = data(n)
    seeds = tuple(range(n_seeds))
    s1, s2 = s_pair
    for s in s_pair:  # warm up both shapes
        train_call(arch, x, y, s, seeds)
        train_call(arch, x, y, s, (0,))
    ens = {s: [] for s in s_pair}
    seq = {s: [] for s in s_pair}  # wall time of 8 sequential calls
    one = {s: [] for s in s_pair}  # every single-seed call
    for _ in range(repeats):
        for s in s_pair:
            ens[s].append(train_call(arch, x, y, s, seeds))
            calls = [train_call(arch, x, y, s, (k,)) for k in seeds]
            seq[s].append(sum(calls))
            one[s].extend(calls)
    hand_ens = handwritten(arch, x, y, s1, n_seeds)
    hand_one = handwritten(arch, x, y, s1, None)
    hand_ens_s = min(timed(hand_ens) for _ in range(repeats)) / s1
    hand_one_s = n_seeds * min(timed(hand_one) for _ in range(repeats)) / s1
    e1, e2 = min(ens[s1]), min(ens[s2])
    q1, q2 = min(seq[s1]), min(seq[s2])
    o1, o2 = min(one[s1]), min(one[s2])
    seq_step = n_seeds * (o2 - o1) / (s2 - s1)  # from the best single calls: less noisy than sums
    out = {
        "width": width,
        "n": n,
        "n_seeds": n_seeds,
        "steps": s1,
        "repeats": repeats,
        "ensemble_s": e1,
        "sequential_s": q1,
        "speedup": q1 / e1,
        "steps_long": s2,
        "ensemble_long_s": e2,
        "sequential_long_s": q2,
        "speedup_long": q2 / e2,
        "single_call_s": {str(s1): o1, str(s2): o2},
        "ensemble_step_s": (e2 - e1) / (s2 - s1),
        "sequential_step_s": seq_step,
        "ensemble_overhead_s": e1 - s1 * (e2 - e1) / (s2 - s1),
        "sequential_overhead_per_call_s": o1 - s1 * seq_step / n_seeds,
        "handwritten_vmapped_step_s": hand_ens_s,
        "handwritten_sequential_unbatched_step_s": hand_one_s,
        "handwritten_step_speedup": hand_one_s / hand_ens_s,
        "target": "speedup >= 2",
    }
    out["steady_state_speedup"] = out["sequential_step_s"] / out["ensemble_step_s"]
    out["passed"] = out["speedup"] >= 2.0
    out["passed_per_step"] = out["steady_state_speedup"] >= 2.0
    return out


# --------------------------------------------------------------------------- PyTorch


def bench_torch(width: int, n: int, steps: int, repeats: int, jax_step_s: float) -> dict:
    try:
        import torch
    except ImportError:
        return {"installed": False, "skipped": "PyTorch not installed"}
    torch.manual_seed(0)
    x_np, y_np = data(n)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    sizes = layer_sizes(width)
    stds = [math.sqrt(2.0)] * DEPTH + [1.0]
    weights = [torch.randn(a, b, dtype=torch.float32, requires_grad=True) for a, b in sizes]
    scales = [s / math.sqrt(a) for s, (a, _) in zip(stds, sizes, strict=False)]
    opt = torch.optim.SGD(weights, lr=LEARNING_RATE, weight_decay=L2)

    def forward(h):
        for i, (w, c) in enumerate(zip(weights, scales, strict=False)):
            h = (h @ w) * c
            if i < len(weights) - 1:
                h = torch.relu(h)
        return h

    def step():
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * torch.sum((forward(x) - y) ** 2) / y.numel()
        loss.backward()
        opt.step()

    def run():
        for _ in range(steps):
            step()

    step(), step()  # warm up
    best = min(timed(run) for _ in range(repeats)) / steps
    return {
        "installed": True,
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "width": width,
        "n": n,
        "steps": steps,
        "torch_step_s": best,
        "jax_step_s": jax_step_s,
        "ratio_jax_over_torch": jax_step_s / best,
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="small sizes (smoke test, not the targets)")
    args = parser.parse_args()
    load_start = os.getloadavg()
    if args.small:
        step = bench_step(256, 128, (4, 40), 2, 512)
        ens = bench_ensemble(64, 128, 8, (4, 40), 1)
        torch_res = bench_torch(256, 128, 4, 2, step["step_s"])
    else:
        step = bench_step(2048, 512, (20, 60), 3, 2048)
        ens = bench_ensemble(512, 512, 8, (20, 60), 2)
        torch_res = bench_torch(2048, 512, 10, 3, step["step_s"])
    results = {
        "step": step,
        "ensemble": ens,
        "torch": torch_res,
        "machine": {
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "backend": jax.default_backend(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        },
    }
    g = 1e9
    print(
        f"training step (width {step['width']}, {step['n']} samples, float32): {step['achieved_flops'] / g:.1f} "
        f"GFLOP/s = {100 * step['fraction_of_matmul']:.0f}% of the measured JAX float32 matmul rate "
        f"{step['matmul']['jax_float32_flops'] / g:.1f} GFLOP/s (target >= 50%); "
        f"{step['step_s'] * 1e3:.1f} ms/step, {step['flops_per_step']['total'] / g:.2f} GFLOP/step, "
        f"numpy matmul {step['matmul']['numpy_float32_flops'] / g:.1f} GFLOP/s"
    )
    print(
        f"  same step hand-written (jit + fori_loop, no vmap): {step['handwritten_step_s'] * 1e3:.1f} ms/step = "
        f"{100 * step['handwritten_fraction']:.0f}%; vmapped over 1 seed with traced bounds: "
        f"{step['handwritten_vmap1_step_s'] * 1e3:.1f} ms/step = {100 * step['handwritten_vmap1_fraction']:.0f}%; "
        f"train() per-call overhead {step['per_call_overhead_s']:.2f} s"
    )
    print(
        f"{ens['n_seeds']}-seed vmapped ensemble vs {ens['n_seeds']} sequential runs (width {ens['width']}, "
        f"{ens['n']} samples, {ens['steps']} steps): {ens['ensemble_s']:.2f} s vs {ens['sequential_s']:.2f} s, "
        f"speedup {ens['speedup']:.2f}x (target >= 2x); at {ens['steps_long']} steps {ens['speedup_long']:.2f}x; "
        f"per step {ens['steady_state_speedup']:.2f}x; per-call overhead {ens['sequential_overhead_per_call_s']:.2f} s"
    )
    print(
        f"  hand-written steps (no per-call overhead): vmapped {ens['n_seeds']} seeds "
        f"{ens['handwritten_vmapped_step_s'] * 1e3:.1f} ms/step vs {ens['n_seeds']} x one unbatched seed "
        f"{ens['handwritten_sequential_unbatched_step_s'] * 1e3:.1f} ms/step, speedup "
        f"{ens['handwritten_step_speedup']:.2f}x"
    )
    print(
        "  (the end-to-end gain is the per-call cost — compilation, initialization — paid once instead of "
        f"{ens['n_seeds']} times; per step the ensemble is {'' if ens['passed_per_step'] else 'not '}2x faster)"
    )
    if torch_res["installed"]:
        print(
            f"PyTorch {torch_res['version']} CPU step (width {torch_res['width']}, {torch_res['n']} samples): "
            f"{torch_res['torch_step_s'] * 1e3:.1f} ms vs JAX {torch_res['jax_step_s'] * 1e3:.1f} ms, "
            f"ratio JAX/PyTorch {torch_res['ratio_jax_over_torch']:.2f}"
        )
    else:
        print("PyTorch not installed: skipped")
    out = Path(__file__).parent / "results" / ("train_small.json" if args.small else "train.json")
    save_json(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
