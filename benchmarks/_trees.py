"""Before and after in one run: a benchmark measured in a fresh interpreter of its own for each
source tree (this one, and `--baseline DIR`: `git archive REV dualsaver | tar -x -C DIR`), the
trees alternately, so drift on a shared machine hits them alike.

A benchmark puts `tree_path()` first on `sys.path` before it imports `dualsaver`: a measuring
child (run with `--tree DIR`) then imports that tree's. The child measures and prints one JSON object
({what: figure}); the parent runs the children (`alternately`) and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

THIS_TREE = Path(__file__).resolve().parents[1]


def tree_path() -> str:
    """The tree whose `dualsaver` this process imports: `--tree DIR`'s in a child, else this one."""
    return sys.argv[sys.argv.index("--tree") + 1] if "--tree" in sys.argv else str(THIS_TREE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", type=Path, help="another source tree, measured alternately with this one")
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)  # a child: measure, print JSON


def child_prints(tree: Path, figures: dict[str, float]) -> None:
    """A child's answer, from the tree it was asked to measure."""
    import dualsaver

    assert Path(dualsaver.__file__).resolve().is_relative_to(tree.resolve()), dualsaver.__file__
    print(json.dumps(figures))


def alternately(script: str, arguments: list[str], baseline: Path | None, rounds: int) -> dict[str, dict[str, float]]:
    """{tree name: {what: median figure}}: `script` run with `arguments` in a child per tree and
    round, the trees in turn. A tree from before a measurement was added has no figure for it."""
    trees = {"this tree": THIS_TREE}
    if baseline is not None:
        trees["baseline"] = baseline.resolve()
    found: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            child = subprocess.run([sys.executable, script, "--tree", str(tree), *arguments],
                                   capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
            for what, figure in json.loads(child.stdout.splitlines()[-1]).items():
                found[name].setdefault(what, []).append(figure)
    return {name: {what: sorted(v)[len(v) // 2] for what, v in figures.items()} for name, figures in found.items()}


def print_table(medians: dict[str, dict[str, float]], width: int) -> None:
    """One row a measurement (this tree's), one column a tree."""
    print(f"{'':<{width}}" + "".join(f"{name:>14}" for name in medians))
    for what in medians["this tree"]:
        print(f"{what:<{width}}" + "".join(f"{m.get(what, float('nan')):>14.1f}" for m in medians.values()))
