"""Time the planner's reachability (ancestor/descendant bitsets) and cut detection against
networkx on a bench instance.

    python bench/planner/reachability.py [INSTANCE.json ...]

Default: the GPT-2-XL backward and forward instances. The planner keeps its bitsets when
networkx is far slower here (see the comment on `Graph.ancestors`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import networkx as nx

from dynamo_modelopt.planner import Problem
from dynamo_modelopt.planner.decompose import cut_operations
from dynamo_modelopt.planner.graph import Graph, build_graph

HERE = Path(__file__).resolve().parent
DEFAULT = ["gpt2-xl_train_backward_2.json", "gpt2-xl_train_forward_1.json"]


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def bitsets(problem: Problem) -> tuple[float, list[int]]:
    """(seconds, cuts) of the bitsets and cut detection on a fresh graph (they are cached)."""
    g = build_graph(problem)
    t = time.perf_counter()
    cuts = cut_operations(g)
    return time.perf_counter() - t, cuts


def with_networkx(g: Graph) -> list[int]:
    dag = nx.DiGraph()
    dag.add_nodes_from(range(g.n))
    dag.add_edges_from((u, v) for u in range(g.n) for v in g.succ[u])
    anc = {v: len(nx.ancestors(dag, v)) for v in dag}
    desc = {v: len(nx.descendants(dag, v)) for v in dag}
    return [v for v in range(g.n) if anc[v] + desc[v] == g.n - 1]


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or [HERE / "instances" / name for name in DEFAULT]
    for path in paths:
        problem = Problem.from_json(path)
        g = build_graph(problem)
        t_bits, cuts = min(bitsets(problem) for _ in range(3))
        t_nx, cuts_nx = best_of(lambda g=g: with_networkx(g), repeat=1)
        t_tc, _ = best_of(lambda g=g: nx.transitive_closure_dag(nx.DiGraph(g_edges(g))), repeat=1)
        assert cuts == cuts_nx
        print(
            f"{problem.name}: {g.n} operations, {len(cuts)} cuts; "
            f"bitsets {1e3 * t_bits:.1f} ms, "
            f"networkx ancestors+descendants {1e3 * t_nx:.1f} ms, "
            f"networkx transitive_closure_dag {1e3 * t_tc:.1f} ms"
        )
    return 0


def g_edges(g: Graph) -> list[tuple[int, int]]:
    return [(u, v) for u in range(g.n) for v in g.succ[u]]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
