"""Argument types of the ``ntk-l2`` command line.

Each type turns a flag's text into a value or raises `argparse.ArgumentTypeError`,
which the parser (`ntk_l2.cli.args`) prints as one line ``ntk-l2: error: argument --flag: …``
with exit code 2. Importing this module imports neither NumPy nor JAX (`times` imports NumPy
when it runs).
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from ntk_l2.common.memory import parse_bytes

if TYPE_CHECKING:
    import numpy as np


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number ≥ 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def momentum(text: str) -> float:
    """A momentum coefficient β in [0, 1)."""
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number ≥ 1."""
    return _integer(text, 1)


def nonnegative_int(text: str) -> int:
    """A whole number ≥ 0."""
    return _integer(text, 0)


def degree(text: str) -> int:
    """A homogeneity degree: a whole number ≥ 0 ('4' or '4.0')."""
    value = _number(text)
    if value < 0 or not value.is_integer():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(value)


def auto_or(kind):
    """'auto', or a value of ``kind``."""

    def parse(text: str):
        return "auto" if text == "auto" else kind(text)

    parse.__name__ = f"auto_or_{kind.__name__}"
    return parse


def _items(text: str) -> list[str]:
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def finite_float(text: str) -> float:
    """A finite number (its range is checked where it is used)."""
    return _number(text)


def _listed(text: str, kind, what: str) -> tuple:
    try:
        return tuple(kind(x) for x in _items(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _distinct(values: tuple, text: str) -> tuple:
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"values repeat in {text!r}")
    return values


def positive_floats(text: str) -> tuple[float, ...]:
    """Comma-separated distinct numbers > 0."""
    return _distinct(_listed(text, positive_float, "comma-separated positive numbers"), text)


def positive_ints(text: str) -> tuple[int, ...]:
    """Comma-separated distinct whole numbers ≥ 1."""
    return _distinct(_listed(text, positive_int, "comma-separated positive integers"), text)


def positive_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers ≥ 1 (repeats allowed: layer widths)."""
    return _listed(text, positive_int, "comma-separated positive integers")


def times(text: str) -> np.ndarray:
    """Comma-separated finite steps ≥ 0 (an output file holds finite numbers only)."""
    import numpy as np

    values = []
    for item in _items(text):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if math.isnan(value) or value < 0:
            raise argparse.ArgumentTypeError(f"times must be numbers >= 0, got {item!r}")
        if math.isinf(value):
            raise argparse.ArgumentTypeError(
                "inf cannot be written to the output file; a large finite time "
                "such as 1e300 gives the t → ∞ limit of gradient flow"
            )
        values.append(value)
    return np.array(values, np.float64)


def size(text: str) -> float:
    """A memory size: 512M, 24G, 1.5T or bytes."""
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[1]) from None
