"""``ntk-l2 kernel``: the NTK and NNGP of a whole dataset, computed tile by tile into a kernel store.

One machine: ``ntk-l2 kernel --dataset mnist --n-train 5000 --out K/`` uses every local device
(GPUs; on CPU ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` splits the cores into N
devices). Several processes or hosts: run the same command on each with ``--coordinator HOST:PORT
--num-processes P --process-id I`` (or ``--distributed auto`` where JAX detects the cluster, e.g.
under SLURM); each computes its share of the tiles into OUT, which every process must see (a shared
filesystem). Killed, the same command resumes: only the missing tiles are computed
(`ntk_l2.experiments.kernels`).
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from ntk_l2.cli.arg_types import nonnegative_int, positive_int, size
from ntk_l2.cli.flags import data_flags

if TYPE_CHECKING:
    from ntk_l2.data.container import Dataset

__all__ = ["kernel_flags", "run_kernel"]

_MAX_SHIFT = 2  # pixels, along each axis, of the shifted copies


def kernel_flags(p: argparse.ArgumentParser) -> None:
    """``kernel``: data, the network, the tiles, ``--out`` and the processes of a cluster."""
    data_flags(p, ("digits", "mnist"))
    p.add_argument(
        "--shifted-copies",
        type=nonnegative_int,
        default=0,
        metavar="K",
        help=f"mnist: train on (K + 1)·n-train images, each drawn image and K copies of it shifted by distinct "
        f"random offsets of up to {_MAX_SHIFT} pixels (zero fill; test set unchanged)",
    )
    p.add_argument("--arch", default="fc", choices=("fc",), help="fc: fully connected, as in compare")
    p.add_argument("--depth", type=positive_int, default=3, help="hidden layers (bias-free ReLU, degree depth + 1)")
    p.add_argument("--tile", type=positive_int, default=1000, help="rows and columns of a tile (at most --n-train)")
    p.add_argument("--no-nngp", action="store_true", help="store the NTK blocks only, without the NNGP blocks")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="the kernel store: a new or empty directory, or a store made by the same command (resumed)",
    )
    p.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="address of process 0, with --num-processes and --process-id (default: one process)",
    )
    p.add_argument(
        "--num-processes", type=positive_int, default=None, metavar="P", help="processes in all (default: one)"
    )
    p.add_argument(
        "--process-id", type=nonnegative_int, default=None, metavar="I", help="this process, 0 … P - 1 (default: 0)"
    )
    p.add_argument(
        "--distributed",
        default=None,
        choices=("auto",),
        help="auto: let JAX find the cluster's processes (SLURM, cloud TPU and GPU clusters) (default: one process)",
    )
    p.add_argument(
        "--max-memory",
        type=size,
        default=None,
        metavar="SIZE",
        help="refuse a group of tiles estimated above SIZE, e.g. 8G (default: the memory available now)",
    )


def _distributed(args: argparse.Namespace) -> dict[str, object] | None:
    """The arguments of ``jax.distributed.initialize`` ({} for auto), or None for one process."""
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if args.distributed == "auto":
        if any(given):
            raise ValueError(
                "--distributed: auto finds the processes itself; drop --coordinator/--num-processes/--process-id"
            )
        return {}
    if not any(given):
        return None
    if not all(given):
        raise ValueError("--coordinator: give --coordinator, --num-processes and --process-id together (or none)")
    if (
        not re.fullmatch(r"[^\s:]+:\d{1,5}", args.coordinator)
        or not 0 < int(args.coordinator.rsplit(":", 1)[1]) < 65536
    ):
        raise ValueError(f"--coordinator: expected HOST:PORT, e.g. node01:12345, got {args.coordinator!r}")
    if args.process_id >= args.num_processes:
        raise ValueError(f"--process-id: must be below --num-processes ({args.num_processes}), got {args.process_id}")
    return {
        "coordinator_address": args.coordinator,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }


def _load(args: argparse.Namespace) -> Dataset:
    """The dataset of the data flags, enlarged by ``--shifted-copies`` (one line naming --data-dir or
    --download when the files are missing)."""
    from ntk_l2.cli.commands import _dataset

    return _dataset(args)


def run_kernel(args: argparse.Namespace) -> int:
    """Compute (or resume) the kernel store ``--out``; prints one line: blocks, sizes, tiles, time."""
    if args.shifted_copies and args.dataset != "mnist":
        raise ValueError(f"--shifted-copies: for --dataset mnist only, got --dataset {args.dataset}")
    if args.shifted_copies > (2 * _MAX_SHIFT + 1) ** 2 - 1:
        raise ValueError(
            f"--shifted-copies: at most {(2 * _MAX_SHIFT + 1) ** 2 - 1} (the distinct nonzero shifts of up to "
            f"{_MAX_SHIFT} pixels), got {args.shifted_copies}"
        )
    distributed = _distributed(args)
    import jax

    if distributed is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
        try:
            jax.distributed.initialize(**distributed)
        except (ValueError, RuntimeError) as err:  # no cluster found, coordinator unreachable, …
            flag = "--distributed" if not distributed else "--coordinator"
            raise ValueError(f"{flag}: JAX could not start the processes ({' '.join(str(err).split())})") from None
    from ntk_l2.common.memory import memory_limit
    from ntk_l2.experiments.kernels import compute_kernel_store, fc_kernel_architecture

    ds = _load(args)
    arch, description = fc_kernel_architecture(args.depth, ds.n_classes)
    dataset = {
        "name": ds.name,
        "n_train": len(ds.labels_train),
        "n_test": len(ds.labels_test),
        "drawn_train": args.n_train,
        "seed": args.seed,
        "shifted_copies": args.shifted_copies,
        "max_shift": _MAX_SHIFT if args.shifted_copies else None,
    }
    with memory_limit(args.max_memory):
        run = compute_kernel_store(
            arch, ds, args.out, tile=args.tile, nngp=not args.no_nngp, architecture=description, dataset=dataset
        )
    print(run.summary())
    if distributed is not None:
        jax.distributed.shutdown()
    return 0
