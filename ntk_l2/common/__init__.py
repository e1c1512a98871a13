"""Shared plumbing with no knowledge of the science: atomic file writes and strict JSON (`io`),
loss and accuracy (`metrics`), memory limits and byte sizes (`memory`), silencing noisy
imports (`quiet`), frozen records that round-trip through strict JSON and the typed results
built on them (`records`). Imports nothing from ntk_l2: every other subpackage may import it.
"""
