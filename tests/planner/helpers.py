"""Shared builders and brute-force references for the planner tests."""

from __future__ import annotations

import itertools

from dynamo_modelopt.planner import Tensor, make_problem
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.problem import Problem


def branchy() -> Problem:
    """Two independent branches with big intermediates. Program order interleaves them
    (peak 210); finishing one branch before starting the other peaks at 120."""
    t = Tensor
    return make_problem(
        ["a1", "b1", "a2", "b2", "join"],
        [
            t("x", 10, None, ("a1", "b1")),
            t("a1o", 100, "a1", ("a2",)),
            t("b1o", 100, "b1", ("b2",)),
            t("a2o", 10, "a2", ("join",)),
            t("b2o", 10, "b2", ("join",)),
            t("out", 10, "join", (), live_to_end=True),
        ],
        name="branchy",
    )


def fragmenting() -> Problem:
    """A fixed order whose best-fit placement needs 8 units but 7 (the bound) suffices:
    C [0,1] size 4, D [1,4] size 2, A [3,4] size 2, B [3,3] size 3."""
    ops = ["s0", "s1", "s2", "s3", "s4"]
    t = Tensor
    return make_problem(
        ops,
        [
            t("C", 4, "s0", ("s1",)),
            t("D", 2, "s1", ("s4",)),
            t("A", 2, "s3", ("s4",)),
            t("B", 3, "s3", ()),
        ],
        precedences=list(itertools.pairwise(ops)),
        name="fragmenting",
    )


def small_unaligned():
    """Three 4-byte scalars and one 100-byte buffer live together at step 1 (alignment 64):
    raw live bytes 112, but any aligned placement needs 64 * 3 + 100 = 292 bytes."""
    ops = ["s0", "s1", "s2"]
    t = Tensor
    return make_problem(
        ops,
        [
            t("a", 4, "s0", ("s2",), alignment=64),
            t("b", 4, "s0", ("s2",), alignment=64),
            t("c", 4, "s1", ("s2",), alignment=64),
            t("big", 100, "s1", ("s2",), alignment=64),
        ],
        precedences=list(itertools.pairwise(ops)),
        name="small_unaligned",
    )


def all_orders(problem: Problem) -> list[list[str]]:
    """Every topological order (for tiny problems)."""
    g = build_graph(problem)
    out: list[list[str]] = []

    def rec(prefix: list[int], indeg: list[int]) -> None:
        if len(prefix) == g.n:
            out.append(g.names(prefix))
            return
        for v in range(g.n):
            if indeg[v] == 0 and v not in prefix:
                for w in g.succ[v]:
                    indeg[w] -= 1
                rec([*prefix, v], indeg)
                for w in g.succ[v]:
                    indeg[w] += 1

    rec([], [len(p) for p in g.pred])
    return out


def brute_force_peak(problem: Problem) -> int:
    g = build_graph(problem)
    return min(g.peak([g.index[o] for o in order]) for order in all_orders(problem))
