"""The planner chooses what the backward recomputes; the min-cut partitioner does the rest.

Inductor splits a joint graph with the min-cut partitioner (torch/_functorch/partitioners.py,
`min_cut_rematerialization_partition`): it recomputes cheap, fusible forward operations in the
backward by itself, and never recomputes compute-intensive ones (matmuls, convolutions,
attention) unless told to. `PlannedPartitioner`, installed as Inductor's
`custom_partitioner_fn`, runs it once, then builds the `RematProblem` of what it saved
(capture/joint.py): each saved tensor that could be recomputed from the other saved tensors and
the inputs is an option, at the run time of the operations that recomputing it reruns (in
seconds, priced as the choice between candidates prices the compiled code:
`capture/runtime.py`). It solves it (the lowest peak over the backward's steps within its budget:
what the choice allows this candidate, else `max_overhead` of the joint graph's estimated run
time), marks the operations of the chosen options `MUST_RECOMPUTE` (the
checkpoint policy the partitioner already honours for selective activation checkpointing) and
partitions again. Nothing chosen: exactly Inductor's partition.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from torch import fx

from .._torch_compat import CustomPartitionerFn  # None before torch 2.10: not offered
from ..capture.joint import BackwardBoundary, joint_runtime, problem_from_boundary, remat_problem
from ..capture.runtime import node_seconds
from ..planner.remat import RematPlan, solve_remat, validate_remat

log = logging.getLogger(__name__)


def available() -> bool:
    return CustomPartitionerFn is not None


def recompute_closures(
    joint: fx.Graph,
    node_info: Any,
    saved: Sequence[fx.Node],
    max_nodes: int = 32,
    mispredicted: bool = False,
) -> dict[fx.Node, list[fx.Node]]:
    """For each saved forward tensor that could be recomputed instead, the forward operations
    recomputing it runs: its ancestors back to other saved tensors and the inputs.

    Left out: inputs and what aliases them, tensors whose recomputation would rerun random
    operations or operations under a user's checkpoint policy, those needing more than
    `max_nodes` operations (recomputing a whole branch is rarely worth its time), and, unless
    `mispredicted`, those rerunning a grouped (depthwise) convolution or attention, whose run
    time FLOPs misjudge: few FLOPs, slow kernels (MobileNet-v2, batch 8 on CPU: 20 recomputed
    depthwise convolutions cost +9.5% step time where the estimate said under 5%; GPT-2's
    recomputed matmuls and ResNet-18's convolutions stayed within it). That was with FLOP
    costs; they are timed now (`capture/runtime.py`), but the rule stays until the zoo has
    been measured without it."""
    from .._torch_compat import is_rng_op

    stop = set(saved) | set(node_info.inputs)
    found: dict[fx.Node, list[fx.Node]] = {}
    for node in saved:
        if node.op != "call_function" or not node_info.is_required_fw(node):
            continue
        rerun: list[fx.Node] = []
        stack, seen, ok = [node], {node}, True
        while stack and ok:
            current = stack.pop()
            ok = (
                current.op == "call_function"
                and node_info.is_required_fw(current)
                and "recompute" not in current.meta
                and not is_rng_op(current)
                and (mispredicted or not _mispredicted(current))
                and len(rerun) < max_nodes
            )
            rerun.append(current)
            for arg in current.all_input_nodes:
                if arg not in stop and arg not in seen:
                    seen.add(arg)
                    stack.append(arg)
        if ok:
            found[node] = rerun
    return found


_ATTENTION = (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_flash_attention_forward",
    "_efficient_attention_forward",
)


def _mispredicted(node: fx.Node) -> bool:
    """A grouped convolution or an attention kernel: run time far from its FLOPs' share."""
    packet = getattr(node.target, "overloadpacket", None)
    name = getattr(packet, "__name__", "")
    if name == "convolution":
        groups = node.args[8] if len(node.args) > 8 else node.kwargs.get("groups", 1)
        return groups != 1
    return name in _ATTENTION


class NothingToRecompute(Exception):
    """The plan adds no recomputation: the candidate would compile to the partition Inductor
    makes anyway, so compiling it is skipped (raised only with `skip_unchanged`)."""


class CannotWin(NothingToRecompute):
    """The plan's own prediction puts the candidate's peak above one already planned: compiling
    it cannot change the choice (raised only with `skip_unchanged`)."""


#: How far below its plan's prediction a candidate's emitted peak may still come: the plan on
#: the compiled backward predicts the step's peak to about 1% (`tests/backend/
#: test_training_settings.py`, deep_mlp); twice that, so a candidate is dropped only where its
#: prediction is clearly out of reach.
PREDICTION_MARGIN = 0.02


class ReplayMismatch(Exception):
    """A recorded recomputation names a tensor this joint graph does not offer to recompute."""


class PlannedPartitioner(CustomPartitionerFn if CustomPartitionerFn else object):  # type: ignore[misc]
    """Inductor's `custom_partitioner_fn`: our recomputation plan, then the min-cut partition.

    The plans it made (one per partitioned joint graph) are kept in `plans` for the report.
    `skip_unchanged`: raise `NothingToRecompute` instead of returning Inductor's own partition
    (when this is one of several candidates, compiling it again would only cost time).
    `mispredicted`: see `recompute_closures`. `measure`: time compute-intensive operations
    (`capture/runtime.py`) rather than price them by FLOPs. `replay`: a plan an earlier compile
    of the same graph made (its summary, as in `plans`; `decision_cache.py`): recompute exactly
    its saved tensors instead of solving; `ReplayMismatch` where one is not on offer.
    """

    def __init__(
        self,
        max_overhead: float,
        time_limit: float = 2.0,
        seed: int = 0,
        threads: int = 1,
        skip_unchanged: bool = False,
        mispredicted: bool = False,
        measure: bool = True,
    ) -> None:
        self.max_overhead = max_overhead
        self.skip_unchanged = skip_unchanged
        self.mispredicted = mispredicted
        self.measure = measure
        # the compiled backward of the same graph pair under Inductor's own partition
        # (`backward_boundary`), set by the caller when it has one
        self.boundary: BackwardBoundary | None = None
        # seconds of recomputation the caller's choice allows (`decide.prepare`); None: the
        # budget is `max_overhead` of the joint graph's estimated run time
        self.budget_seconds: float | None = None
        # a peak the caller already has (`decide.prepare`): a plan on the compiled backward
        # predicting a backward peak that cannot come near it raises `CannotWin` (with
        # `skip_unchanged`), before anything is lowered
        self.must_beat_bytes: int | None = None
        self.time_limit = time_limit
        self.seed = seed
        self.threads = threads
        self.plans: list[dict[str, Any]] = []
        self.replay: dict[str, Any] | None = None

    def __call__(
        self, gm: fx.GraphModule, joint_inputs: Sequence[object], **kwargs: Any
    ) -> tuple[fx.GraphModule, fx.GraphModule]:
        from .._torch_compat import (
            _size_of,
            classify_nodes,
            min_cut_rematerialization_partition,
        )

        # The partitioner's own choice first: what it saves is the base of our problem, and
        # the answer when we recompute nothing more. It CSEs the joint graph in place, so our
        # analysis reads the graph after it.
        default = min_cut_rematerialization_partition(gm, joint_inputs, **kwargs)
        try:
            node_info = classify_nodes(
                gm, kwargs.get("static_lifetime_input_indices") or [], kwargs["num_fwd_outputs"]
            )
            by_name = {n.name: n for n in gm.graph.nodes}
            saved = [by_name[n.name] for n in _saved_inputs(default[1]) if n.name in by_name]
            inputs = set(node_info.inputs)
            candidates = recompute_closures(
                gm.graph, node_info, saved, mispredicted=self.mispredicted
            )

            if self.replay is not None:
                return self._replayed(gm, joint_inputs, candidates, default, kwargs)

            def cost(node: fx.Node) -> float:
                return node_seconds(node, self.measure)

            if self.boundary is not None:
                budget = self.budget_seconds
                if budget is None:
                    budget = self.max_overhead * joint_runtime(gm.graph, cost)
                problem = problem_from_boundary(self.boundary, candidates, cost, max(budget, 0.0))
            else:
                problem = remat_problem(
                    gm.graph,
                    is_backward=lambda n: not node_info.is_required_fw(n) and n not in inputs,
                    inputs=inputs,
                    saved=saved,
                    candidates=candidates,
                    size_of=_size_of,
                    runtime_of=cost,
                    max_overhead=self.max_overhead,
                )
            plan = solve_remat(problem, self.time_limit, self.seed, self.threads)
            errors = validate_remat(problem, plan)
            if errors:
                raise RuntimeError(f"recomputation plan rejected: {errors[0].message}")
        except ReplayMismatch:
            raise
        except Exception as exc:  # no plan: the partitioner's own choice, as under Inductor
            self.plans.append({"recompute": [], "status": f"failed: {exc}"})
            if self.skip_unchanged:
                raise NothingToRecompute(f"no recomputation plan: {exc}") from exc
            log.warning("modelopt: no recomputation plan (%s); Inductor's partition kept", exc)
            return default
        self.plans.append(
            _summary(
                problem.max_cost, plan, "compiled backward" if self.boundary else "joint graph"
            )
        )
        if not plan.recompute:
            if self.skip_unchanged:
                raise NothingToRecompute("nothing worth recomputing within the budget")
            return default
        if (
            self.skip_unchanged
            and self.boundary is not None
            and self.must_beat_bytes is not None
            and plan.peak_bytes * (1.0 - PREDICTION_MARGIN) > self.must_beat_bytes
        ):
            raise CannotWin(
                f"its plan predicts a backward peak of {plan.peak_bytes / 2**20:.2f} MiB, above"
                f" {self.must_beat_bytes / 2**20:.2f} MiB (a candidate already planned, with the"
                f" peak tolerance) by more than the plan's {PREDICTION_MARGIN:.0%} margin"
            )
        return _partition_recomputing(gm, joint_inputs, candidates, plan.recompute, kwargs)

    def _replayed(
        self,
        gm: fx.GraphModule,
        joint_inputs: Sequence[object],
        candidates: dict[fx.Node, list[fx.Node]],
        default: tuple[fx.GraphModule, fx.GraphModule],
        kwargs: dict[str, Any],
    ) -> tuple[fx.GraphModule, fx.GraphModule]:
        assert self.replay is not None
        names = list(self.replay.get("recompute") or [])
        missing = sorted(set(names) - {node.name for node in candidates})
        if missing:
            raise ReplayMismatch(f"not recomputable in this graph: {', '.join(missing[:5])}")
        self.plans.append({**self.replay, "replayed": True})
        if not names:
            return default
        return _partition_recomputing(gm, joint_inputs, candidates, names, kwargs)

    def uuid(self) -> Any:
        return None  # its answer depends on the graph: never served from a cache


def _partition_recomputing(
    gm: fx.GraphModule,
    joint_inputs: Sequence[object],
    candidates: dict[fx.Node, list[fx.Node]],
    names: Collection[str],
    kwargs: dict[str, Any],
) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Mark the operations recomputing the saved tensors `names` MUST_RECOMPUTE and partition
    again with the min-cut partitioner, which honours that policy."""
    from torch.utils.checkpoint import CheckpointPolicy

    from .._torch_compat import min_cut_rematerialization_partition

    for node, rerun in candidates.items():
        if node.name in names:
            for op in rerun:
                op.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE
    return min_cut_rematerialization_partition(gm, joint_inputs, **kwargs)


def _saved_inputs(backward: fx.GraphModule) -> list[fx.Node]:
    """The backward's inputs other than output gradients: what the forward saved for it."""
    return [
        n
        for n in backward.graph.nodes
        if n.op == "placeholder" and not str(n.target).startswith("tangents")
    ]


def _summary(budget: float, plan: RematPlan, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "recompute": sorted(plan.recompute),
        "predicted_backward_peak_bytes": plan.peak_bytes,
        "lower_bound_bytes": plan.lower_bound,
        "cost_seconds": plan.cost,
        "budget_seconds": budget,
        "solver": plan.solver,
        "status": plan.status,
        "solve_seconds": round(plan.solve_seconds, 3),
        **plan.stats,
    }
