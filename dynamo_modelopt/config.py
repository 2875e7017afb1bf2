"""Options of the `modelopt` backend, as passed through `torch.compile(..., options={...})`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from .planner.options import PlannerOptions

ARENA_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class ModeloptConfig:
    """Everything that changes what the backend plans; unknown option names are an error.

    solver: "auto" (Gurobi only where its license fits the model, else CP-SAT), "cpsat",
        "gurobi", "highs" or "heuristic" (no solver: best memory-aware topological sort).
    mode: "two_stage" (order, then offsets) or "joint" (both in one model).
    time_limit: seconds per graph given to the solver.
    relative_gap: stop once the plan is proved within this fraction of optimal.
    threads, seed: solver workers and random seed (same seed and threads, same plan).
    reorder: impose the planned order on Inductor's fused nodes (False keeps Inductor's order
        but still reports on it).
    strict: raise instead of falling back to plain Inductor (meant for tests).
    settings: "auto" compiles the memory-relevant alternatives (layout optimization off, an
        activation memory budget in training), predicts each one's peak with our cost model and
        keeps the lowest within `max_recompute_overhead` of the estimated run time (see
        `decide.py`); "default" compiles Inductor's defaults only (fastest compile); a
        candidate's name ("no_layout_opt", "budget_0.5", "no_layout_opt+budget_0.5",
        "planned_saves", "pointwise_cat", ...) forces it.
    max_recompute_overhead: extra run time allowed for a lower peak (0.05 = 5%); a ratio
        measured at compile time must stay one point below it (`timing.REAL_STEP_MARGIN`).
    peak_tolerance: in "auto", candidates whose predicted peak is within this fraction of the
        lowest one (within the run-time budget) compete on peak times run time (0.02 = 2%; 0
        takes the lowest peak whatever its run time).
    activation_budgets: the activation memory budgets tried in training.
    plan_recomputation: in training, also try the planner's own choice of what to recompute
        ("planned_saves"): the lowest backward peak, step by step, within the run time the
        choice between settings leaves it (`max_recompute_overhead` of the defaults' estimate,
        less what the settings it is combined with add; see `planner/remat.py`,
        `inductor/saved_set.py`).
    recompute_mispredicted: let that plan rerun grouped (depthwise) convolutions and attention
        too (off by default: FLOPs misjudge their run time, see `recompute_closures`).
    arena: "auto" emits one arena per device for each graph's intermediate buffers, each carved
        out at the offset the planner chose, wherever that is predicted not to raise the graph's
        peak (it lowers fragmentation on CUDA); "on" always, "off" never (Inductor allocates each
        buffer on its own). See `inductor/arena.py`.
    measure_workspace: run each extern kernel (convolution, attention, ...) once at compile time
        (CPU or CUDA), with inputs of its shapes, to measure what it allocates inside itself;
        False uses fixed rules instead, which know CPU kernels only (see `capture/workspace.py`).
    measure_kernel_time: time those runs too (they run for it even with `measure_workspace`
        off), and estimate an extern kernel's run time by its measurement instead of its FLOPs
        when comparing settings (CPU; FLOPs miss what layout does to oneDNN's convolutions);
        the recomputation plan times the joint graph's matmuls, convolutions and attention the
        same way (`capture/runtime.py`). False: FLOPs and bytes moved only.
    timing_rounds: in "auto", run every candidate's compiled graph (forward, and backward in
        training) this many times in turns at compile time, on private copies of the inputs,
        and compare run times by the measured ratio to the defaults instead of the estimates
        (which miss what a setting costs outside the kernels they price; see `timing.py`).
        A candidate whose rounds leave open whether it is within `max_recompute_overhead`,
        and that would be chosen if it were, is run again beside the defaults (up to three
        times as many rounds). Skipped where the device lacks the memory to run the
        candidates; 0 turns it off.
    accumulate_in_place: add a matrix product into a full-size addend that dies there
        (`addend.addmm_`) instead of into a new buffer: with tied embeddings the two gradient
        contributions of the shared weight no longer both live at once (see
        `inductor/accumulate.py`).
    backward_layout_candidates: in "auto", with convolutions in training, also try each
        recomputing candidate that keeps layout optimization with its backward compiled without
        it ("bw_no_layout_opt+budget_0.5", "bw_no_layout_opt+planned_saves"): Inductor turns
        layout optimization on for a whole graph that holds a convolution, which a backward does
        only where it recomputes one (see `inductor/backward_layout.py`). Two more compiles.
    decision_cache: in "auto", remember the settings chosen for each graph on disk (keyed by
        the graph, its inputs' shapes and layouts, these options, Inductor's and functorch's
        settings, the versions and the machine), so a later compile of the same graph compiles
        the chosen settings alone, replaying a recomputation plan rather than solving it again
        (see `decision_cache.py`; directory: `$MODELOPT_CACHE_DIR`, else under Inductor's
        cache directory). False searches every time.
    save_problems: a directory where each graph's planning problem and plan are written as
        JSON, to replay with `python -m dynamo_modelopt.planner` or to add to the bench.
    """

    solver: str = "auto"
    mode: str = "two_stage"
    time_limit: float = 5.0
    relative_gap: float = 0.0
    threads: int = 2
    seed: int = 0
    reorder: bool = True
    strict: bool = False
    settings: str = "auto"
    max_recompute_overhead: float = 0.05
    peak_tolerance: float = 0.02
    activation_budgets: tuple[float, ...] = (0.5,)
    plan_recomputation: bool = True
    recompute_mispredicted: bool = False
    arena: str = "auto"
    measure_workspace: bool = True
    measure_kernel_time: bool = True
    timing_rounds: int = 7
    accumulate_in_place: bool = True
    backward_layout_candidates: bool = True
    decision_cache: bool = True
    save_problems: str | None = None

    def __post_init__(self) -> None:
        if self.arena not in ARENA_MODES:
            raise ValueError(f"modelopt: arena must be one of {ARENA_MODES}, not {self.arena!r}")
        object.__setattr__(self, "activation_budgets", tuple(self.activation_budgets))
        if self.timing_rounds < 0:
            raise ValueError("modelopt: timing_rounds must be >= 0")
        if self.max_recompute_overhead < 0:
            raise ValueError("modelopt: max_recompute_overhead must be >= 0")
        if self.peak_tolerance < 0:
            raise ValueError("modelopt: peak_tolerance must be >= 0")
        if not all(0.0 < b <= 1.0 for b in self.activation_budgets):
            raise ValueError("modelopt: activation_budgets must lie in (0, 1]")
        try:
            self.planner_options()  # the planner checks its own options
        except ValueError as exc:
            raise ValueError(f"modelopt: {exc}") from exc

    def planner_options(self) -> PlannerOptions:
        return PlannerOptions(
            solver=self.solver,
            mode=self.mode,
            time_limit=self.time_limit,
            relative_gap=self.relative_gap,
            threads=self.threads,
            seed=self.seed,
        )

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> ModeloptConfig:
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"modelopt: unknown option(s) {unknown}; valid options are {sorted(known)}"
            )
        return cls(**options)

    def replace(self, **changes: Any) -> ModeloptConfig:
        return dataclasses.replace(self, **changes)

    def cache_key(self) -> str:
        """Stable text of every field, for Inductor's cache keys."""
        return repr(sorted(dataclasses.asdict(self).items()))
