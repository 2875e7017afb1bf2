"""In-place reuse predicted for an order: only the last user of a buffer may take it over."""

from __future__ import annotations

from dynamo_modelopt.capture.inplace import peak_with_inplace_reuse, with_inplace_reuse
from dynamo_modelopt.planner import Tensor, make_problem


def _problem():
    # a -> x (100 B); x is read by b and c; c may write its output y over x
    return make_problem(
        ["a", "b", "c", "d"],
        [
            Tensor("x", 100, producer="a", consumers=("b", "c")),
            Tensor("z", 10, producer="b", consumers=("d",)),
            Tensor("y", 100, producer="c", consumers=("d",)),
            Tensor("w", 1, producer="d", live_to_end=True),
        ],
    )


def test_last_user_reuses_the_dying_input() -> None:
    problem = _problem()
    pairs = {"c": [("x", "y")]}
    reused = with_inplace_reuse(problem, ["a", "b", "c", "d"], pairs)
    assert {t.name: t.alias_of for t in reused.tensors}["y"] == "x"
    # x and y share 100 B: the peak is x/y + z + w at d, not x + y + z at c
    assert peak_with_inplace_reuse(problem, ["a", "b", "c", "d"], pairs) == 111


def test_no_reuse_when_another_user_comes_later() -> None:
    problem = _problem()
    pairs = {"c": [("x", "y")]}
    order = ["a", "c", "b", "d"]  # b still reads x after c
    reused = with_inplace_reuse(problem, order, pairs)
    assert all(t.alias_of is None for t in reused.tensors)
    assert peak_with_inplace_reuse(problem, order, pairs) == 210
