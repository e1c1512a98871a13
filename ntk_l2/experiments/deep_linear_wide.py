"""The wide limit of a deep linear network: the theory engine at degree k = L.

A deep linear network with L weight layers and no biases is positively
homogeneous of degree L (`derivations/deep_linear.md`, DL0), so in the NTK
parameterization at large width its outputs under gradient descent with L2
follow the discrete map D1–D2 (`derivations/discrete_time.md`) with k = L and the (linear) NTK of the
architecture. This trains such networks and compares them with that map,
through the same machinery as the ReLU comparison (`ntk_l2.experiments.compare`).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from ntk_l2.data.datasets import Dataset
from ntk_l2.experiments.compare import CompareConfig, compare_width
from ntk_l2.experiments.results_compare import WideDeepLinearComparison


def wide_deep_linear(
    ds: Dataset,
    depth: int,
    width: int,
    learning_rate: float,
    l2: float,
    steps: int,
    seeds: int = 2,
    n_records: int = 20,
    progress: bool | None = None,
) -> tuple[WideDeepLinearComparison, dict[str, np.ndarray]]:
    """Train ``seeds`` deep linear networks (L = ``depth`` weight layers, hidden width ``width``) on ``ds``
    and compare their test outputs with the infinite-width theory at k = L.

    Returns:
      (summary, arrays) of `ntk_l2.experiments.compare.compare_width`, the summary with ``degree`` = L
      (`ntk_l2.experiments.results_compare.WideDeepLinearComparison`): relative errors of the test
      outputs per record, accuracies, kernel and layer-norm decay against (1 − ηλ)^{2(L−1)s} and (1 − ηλ)^s.
    """
    if not isinstance(depth, (int, np.integer)) or depth < 2:
        raise ValueError(
            f"depth: a deep linear network needs >= 2 weight layers here, got {depth!r} "
            "(depth 1 is the linear model: ntk_l2.deep_linear.ridge_flow)"
        )
    cfg = CompareConfig(
        depth=int(depth) - 1,
        widths=(int(width),),
        learning_rate=learning_rate,
        l2=l2,
        steps=steps,
        seeds=seeds,
        n_records=n_records,
        activation="linear",
    )
    summary, arrays = compare_width(ds, cfg, int(width), progress=progress)
    values = {f.name: getattr(summary, f.name) for f in fields(summary)}
    return WideDeepLinearComparison(**values, degree=int(depth)), arrays
