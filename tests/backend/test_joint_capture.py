"""The recomputation problem built from a compiled backward: steps, bytes and options."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from dynamo_modelopt.capture.joint import BoundaryStorage, backward_boundary, problem_from_boundary
from dynamo_modelopt.planner.lifetimes import live_bytes_profile
from dynamo_modelopt.planner.problem import Tensor, make_problem
from dynamo_modelopt.planner.remat import peak, solve_remat


@dataclass(frozen=True)
class _Node:
    """Stands in for an FX node: the functions read only its name and inputs."""

    name: str
    all_input_nodes: tuple[_Node, ...] = ()


def _backward() -> tuple[object, list[str], list[int]]:
    """A backward of four kernel calls receiving two saved activations and a gradient:
    `act1` (150 bytes) is read at once, `act2` (100 bytes) only by the last call, and
    parameter gradients (live to the end) build up meanwhile. The peak is at the start."""
    order = ["k0", "k1", "k2", "k3"]
    problem = make_problem(
        order,
        [
            Tensor("tangents_1", 4, consumers=("k0",)),
            Tensor("act1", 150, consumers=("k0",)),
            Tensor("act2", 100, consumers=("k3",)),
            Tensor("act2_view", 100, consumers=("k3",), alias_of="act2"),
            Tensor("g0", 10, producer="k0", consumers=("k1", "k3")),
            Tensor("grad_w1", 60, producer="k1", live_to_end=True),
            Tensor("grad_w2", 60, producer="k2", live_to_end=True),
            Tensor("grad_w3", 20, producer="k3", live_to_end=True),
        ],
    )
    return problem, order, live_bytes_profile(problem, order)


def test_boundary_records_each_saved_storage_once_with_its_reads() -> None:
    problem, order, profile = _backward()
    boundary = backward_boundary(problem, order, profile)
    assert boundary.profile == profile == [264, 170, 230, 250]
    saved = boundary.saved
    assert set(saved) == {"act1", "act2"}  # not the output gradient; the view joins its base
    assert saved["act2"] == BoundaryStorage(
        names=["act2", "act2_view"], nbytes=100, first_read=3, end=4
    )
    assert saved["act1"].first_read == 0 and saved["act1"].end == 1  # live at step 0 only


def test_problem_from_boundary_makes_options_of_fully_recomputable_storages() -> None:
    problem, order, profile = _backward()
    boundary = backward_boundary(problem, order, profile)
    recompute_act2 = [_Node("mm"), _Node("act2")]
    candidates = {_Node("act2"): recompute_act2, _Node("act2_view"): [_Node("act2_view")]}
    remat = problem_from_boundary(boundary, candidates, runtime_of=lambda n: 1.0, max_cost=5.0)
    (option,) = remat.options  # act1 is no candidate
    assert option.name == "act2" and option.size == 100 and option.cost == 3.0
    assert option.saved_live == (0, 4) and option.recomputed_live == (3, 4)
    assert remat.max_cost == 5.0
    # nothing recomputed: the compiled backward's own profile
    assert peak(remat, set()) == max(profile)
    plan = solve_remat(remat)
    assert plan.recompute == frozenset({"act2"})
    # act2 is off the first steps: the peak moves to the last, where it is read anyway
    assert plan.peak_bytes == 250 and plan.status == "optimal"
    assert remat.base == (164, 70, 130, 150)


def test_saved_storage_a_recomputation_reads_is_held_until_it_runs() -> None:
    """Recomputing act2 from act1 (read at once otherwise) keeps act1's 150 bytes live up to
    the last step, where act2 is recomputed: no lower peak, so nothing is recomputed."""
    problem, order, profile = _backward()
    boundary = backward_boundary(problem, order, profile)
    mm = _Node("mm", all_input_nodes=(_Node("act1"), _Node("primals_1")))
    act2 = _Node("act2", all_input_nodes=(mm,))
    candidates = {act2: [mm, act2], _Node("act2_view"): [_Node("act2_view", (act2,))]}
    remat = problem_from_boundary(boundary, candidates, lambda n: 1.0, 5.0)
    (option,) = remat.options
    assert option.reads == ("act1",)
    assert [(h.name, h.size, h.end) for h in remat.holds] == [("act1", 150, 1)]
    assert peak(remat, {"act2"}) == 400  # act1 and act2 both live at the last step
    assert solve_remat(remat).recompute == frozenset()


def test_storage_with_a_name_that_cannot_be_recomputed_is_no_option() -> None:
    problem, order, profile = _backward()
    boundary = backward_boundary(problem, order, profile)
    candidates = {_Node("act2"): [_Node("act2")]}  # act2_view is not recomputable
    remat = problem_from_boundary(boundary, candidates, lambda n: 1.0, 5.0)
    assert remat.options == ()


def test_closures_leave_out_grouped_convolutions_unless_asked() -> None:
    """relu(conv(x, w)) with the conv output not saved: recomputing the relu output reruns
    the convolution, left out by default where it is grouped (depthwise), kept where not."""
    import torch
    from torch import fx

    from dynamo_modelopt.inductor.saved_set import recompute_closures

    def closures(groups: int, **flags: bool) -> dict[str, list[str]]:
        graph = fx.Graph()
        x, w = graph.placeholder("x"), graph.placeholder("w")
        conv = graph.call_function(
            torch.ops.aten.convolution.default,
            (x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], groups),
        )
        act = graph.call_function(torch.ops.aten.relu.default, (conv,))
        doubled = graph.call_function(torch.ops.aten.mul.Tensor, (act, 2.0))
        graph.output((doubled,))
        info = SimpleNamespace(inputs=[x, w], is_required_fw=lambda node: True)
        found = recompute_closures(graph, info, [act, doubled], **flags)
        return {node.name: [op.name for op in ops] for node, ops in found.items()}

    assert closures(groups=1) == {
        "relu_default": ["relu_default", "convolution_default"],
        "mul_tensor": ["mul_tensor"],
    }
    assert closures(groups=8) == {"mul_tensor": ["mul_tensor"]}
    assert closures(groups=8, mispredicted=True)["relu_default"] == [
        "relu_default",
        "convolution_default",
    ]
