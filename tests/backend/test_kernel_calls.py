"""Kernel calls as steps: a C++ kernel group allocates all it writes before its call and frees
all it read last after it."""

from __future__ import annotations

from dynamo_modelopt.capture.scheduler import merge_steps
from dynamo_modelopt.planner import Operation, Problem, Tensor, live_bytes_profile


def _chain() -> Problem:
    # a (100) -> op1 -> b (10) -> op2 -> c (100): separately, a dies before c is allocated
    return Problem(
        operations=[Operation("op0"), Operation("op1"), Operation("op2")],
        tensors=[
            Tensor("a", 100, producer="op0", consumers=("op1",)),
            Tensor("b", 10, producer="op1", consumers=("op2",)),
            Tensor("c", 100, producer="op2", live_to_end=True),
        ],
    )


def test_a_group_holds_its_dying_inputs_and_new_outputs_at_once() -> None:
    problem = _chain()
    order = ["op0", "op1", "op2"]
    assert max(live_bytes_profile(problem, order)) == 110
    merged, steps = merge_steps(problem, [["op0"], ["op1", "op2"]])
    assert steps == ["op0", "op1+op2"]
    assert live_bytes_profile(merged, steps) == [100, 210]
    b = merged.tensor("b")
    assert b.producer == "op1+op2" and b.consumers == ("op1+op2",)


def test_single_node_steps_change_nothing() -> None:
    problem = _chain()
    merged, steps = merge_steps(problem, [["op0"], ["op1"], ["op2"]])
    assert steps == problem.op_names
    assert live_bytes_profile(merged, steps) == live_bytes_profile(problem, steps)
