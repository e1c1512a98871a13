"""Tests for `ntk_l2.networks.arch`: claimed homogeneity degrees vs numerical measurement.

Checks f(cθ) = c^k f(θ), θ·∇f = k f and Θ(cθ) = c^{2(k−1)} Θ(θ) in float64
(see `derivations/homogeneity.md`). Small widths keep the file fast on CPU.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_l2.networks.arch import Architecture, check_degree, convolutional, fully_connected, measure_degree
from ntk_l2.networks.nt import nt

WIDTH = 64


def _measure(arch: Architecture) -> int | None:
    return measure_degree(arch.init_fn, arch.apply_fn, arch.input_shape or (16,))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fc_relu_degree_is_number_of_weight_layers(depth: int) -> None:
    arch = fully_connected(depth, WIDTH, 3, input_dim=16)
    assert arch.degree == depth + 1
    assert arch.homogeneous
    assert _measure(arch) == depth + 1
    check_degree(arch)


def test_conv_relu_degree() -> None:
    arch = convolutional(2, 8, 3, input_shape=(6, 6, 1))
    assert arch.degree == 3
    assert _measure(arch) == 3
    check_degree(arch)


def test_strided_conv_relu_degree() -> None:
    arch = convolutional(2, 8, 3, input_shape=(8, 8, 1), strides=(2, 2), parameterization="standard")
    assert arch.degree == 3
    assert _measure(arch) == 3
    check_degree(arch)
    with pytest.raises(ValueError, match="strides"):
        convolutional(2, 8, 3, input_shape=(8, 8, 1), strides=(0, 2))


@pytest.mark.parametrize("activation", ["leaky_relu", "linear", "identity"])
def test_other_homogeneous_activations(activation: str) -> None:
    arch = fully_connected(2, WIDTH, 2, activation=activation, input_dim=16)
    assert arch.degree == 3
    assert _measure(arch) == 3


def test_standard_parameterization_has_same_degree() -> None:
    arch = fully_connected(2, WIDTH, 2, parameterization="standard", input_dim=16)
    assert arch.degree == 3
    assert _measure(arch) == 3


@pytest.mark.parametrize(
    "build",
    [
        lambda: fully_connected(2, WIDTH, 2, b_std=0.1, input_dim=16),
        lambda: convolutional(1, 4, 2, b_std=0.1, input_shape=(4, 4, 1)),
    ],
)
def test_biases_break_homogeneity(build) -> None:
    arch = build()
    assert arch.degree is None and not arch.homogeneous
    assert _measure(arch) is None
    check_degree(arch)


@pytest.mark.parametrize("activation", ["erf", "tanh"])
def test_saturating_activations_are_not_homogeneous(activation: str) -> None:
    arch = fully_connected(2, WIDTH, 2, activation=activation, input_dim=16)
    assert arch.degree is None
    assert _measure(arch) is None


def test_check_degree_rejects_wrong_claim() -> None:
    arch = fully_connected(1, WIDTH, 2, input_dim=16)
    with pytest.raises(ValueError, match="claimed degree 3"):
        check_degree(dataclasses.replace(arch, degree=3))
    with pytest.raises(ValueError, match="claimed degree None"):
        check_degree(dataclasses.replace(arch, degree=None))


def test_measure_degree_restores_float32_default() -> None:
    arch = fully_connected(1, 8, 1, input_dim=4)
    assert _measure(arch) == 2
    assert not jax.config.jax_enable_x64
    assert jnp.ones(1).dtype == jnp.float32


def test_triple_and_unpacking() -> None:
    arch = fully_connected(1, 8, 1)
    init_fn, apply_fn, kernel_fn = arch
    assert (init_fn, apply_fn, kernel_fn) == arch.triple
    assert arch.input_shape is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.degree = 5  # type: ignore[misc]


def test_kernel_fn_matches_empirical_ntk_at_large_width() -> None:
    arch = fully_connected(1, 4096, 1, input_dim=8)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8))
    ntk = arch.kernel_fn(x, None, "ntk")
    assert ntk.shape == (3, 3)
    _, params = arch.init_fn(jax.random.PRNGKey(2), x.shape)
    emp = nt.empirical_ntk_fn(arch.apply_fn)(x, None, params)
    assert np.linalg.norm(emp - ntk) / np.linalg.norm(ntk) < 0.1


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_conv_kernel_fn_shape(activation: str) -> None:
    arch = convolutional(1, 4, 2, activation=activation, input_shape=(4, 4, 1))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 1))
    ntk = arch.kernel_fn(x, None, "ntk")
    assert ntk.shape == (2, 2)
    assert np.all(np.isfinite(ntk))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=0), "depth"),
        (dict(depth=2.0), "depth"),
        (dict(width=0), "width"),
        (dict(out_dim=0), "out_dim"),
        (dict(input_dim=0), "input_dim"),
        (dict(activation="gelu"), "activation.*relu"),
        (dict(W_std=0.0), "W_std"),
        (dict(W_std=-1.0), "W_std"),
        (dict(b_std=0.0), "b_std.*None"),
        (dict(readout_W_std=float("nan")), "readout_W_std"),
        (dict(parameterization="mup"), "parameterization"),
    ],
)
def test_fully_connected_bad_arguments(kwargs: dict, match: str) -> None:
    kwargs = {"depth": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        fully_connected(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=0), "depth"),
        (dict(channels=0), "channels"),
        (dict(filter_shape=(0, 3)), "filter_shape"),
        (dict(filter_shape=(3,)), "filter_shape"),
        (dict(padding="REFLECT"), "padding"),
        (dict(input_shape=(8, 8)), "input_shape"),
        (dict(activation="softplus"), "activation"),
        (dict(W_std=0.0), "W_std"),
    ],
)
def test_convolutional_bad_arguments(kwargs: dict, match: str) -> None:
    kwargs = {"depth": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        convolutional(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scales=(1.0,)), "scales"),
        (dict(scales=(-2.0,)), "scales"),
        (dict(n_points=0), "n_points"),
    ],
)
def test_measure_degree_bad_arguments(kwargs: dict, match: str) -> None:
    arch = fully_connected(1, 8, 1)
    with pytest.raises(ValueError, match=match):
        measure_degree(arch.init_fn, arch.apply_fn, (4,), **kwargs)
