"""Execute the jupytext-paired notebooks top to bottom.

    python notebooks/execute.py              # full run, writes NAME.ipynb with outputs
    python notebooks/execute.py --small      # quick run (NTK_L2_SMALL=1), outputs discarded

The `.py` files are the sources; the committed `.ipynb` files hold a full run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(source: Path, small: bool, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run one paired notebook in its own kernel; return it with outputs."""
    notebook = jupytext.read(source)
    env_before = os.environ.get("NTK_L2_SMALL")
    os.environ["NTK_L2_SMALL"] = "1" if small else "0"
    try:
        NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}
        ).execute()
    finally:
        if env_before is None:
            os.environ.pop("NTK_L2_SMALL", None)
        else:
            os.environ["NTK_L2_SMALL"] = env_before
    return notebook


def sources() -> list[Path]:
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("names", nargs="*", help="notebook stems (default: all)")
    args = parser.parse_args()
    for source in sources():
        if args.names and source.stem not in args.names:
            continue
        notebook = execute(source, args.small)
        if not args.small:
            target = source.with_suffix(".ipynb")
            tmp = target.with_suffix(".ipynb.tmp")
            nbformat.write(notebook, tmp)
            os.replace(tmp, target)
            print(f"executed {source.name} -> {target.name}")
        else:
            print(f"executed {source.name} (small)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
