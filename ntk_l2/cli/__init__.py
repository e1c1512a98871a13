"""The `ntk-l2` command line: argument types (`arg_types`), each subcommand's flags (`flags`), the
parser (`args`) and one function per subcommand (`commands`), each importing its experiment only
when run so that ``ntk-l2 --help`` imports neither JAX nor neural-tangents. ``python -m ntk_l2.cli``
runs it too (`__main__`). May import every other subpackage.
"""

from ntk_l2.cli.commands import main

__all__ = ["main"]
