"""The version of ntk_l2, defined once: pyproject.toml reads it from here (dynamic version)."""

__version__ = "0.1.0"
