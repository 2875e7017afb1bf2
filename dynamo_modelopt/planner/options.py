"""`PlannerOptions`: solver choice, limits and the switches of each technique (for ablations)."""

from __future__ import annotations

from dataclasses import dataclass

SOLVERS = ("auto", "cpsat", "gurobi", "highs", "heuristic")
PLAN_MODES = ("two_stage", "joint")


@dataclass
class PlannerOptions:
    """How `plan` works.

    solver: "auto" (Gurobi only when its license admits the model, else CP-SAT), "cpsat",
        "gurobi", "highs" or "heuristic" (no solver).
    plan_mode: "two_stage" (order minimising the peak, then offsets minimising the arena) or
        "joint" (order and addresses in one model, as MODeL does).
    time_limit: seconds for the whole solve (shared between stages and pieces).
    Switches (all on by default; each can be turned off for an ablation):
        use_windows: ASAP/ALAP windows on operation positions (MODeL's span restriction).
        use_decomposition: split the order problem at cut operations (exact).
        prune_pairs: MILP no-overlap pairs only for buffers that can be live together.
        scale_sizes: divide sizes and alignments by their GCD inside the models.
        symmetry_breaking: order interchangeable operations by their given index.
        warm_start: hint the solvers with the best heuristic solution.
        local_search: improve the best heuristic order, and the solver's when unproved, by
            moving single operations across the peak step (`heuristics.improve_order`).
        exact_offsets: run the exact canonical-placement search for offsets before CP-SAT.
        fewer_steps: MODeL's fewer timesteps than operations in the order models: independent
            operations may share a step, down to max(critical path, step_fraction * operations)
            steps. Smaller models, but a shared step counts all its operations' buffers at once,
            so the optimum can be missed and the model's dual bound is not used (off by
            default: see bench/planner/results_fewer_steps.md).
        pad_sizes: a placed buffer occupies its size rounded up to its alignment in the arena
            (an allocator's block), so the arena's bound, the peak of live padded bytes, is
            reachable; off, the arena counts raw sizes (at most one alignment less).
    deterministic: same result for the same seed and threads (CP-SAT interleaved search);
        False lets CP-SAT run its parallel portfolio, faster but not reproducible.
    """

    solver: str = "auto"
    plan_mode: str = "two_stage"
    time_limit: float = 10.0
    relative_gap: float = 0.0
    threads: int = 2
    seed: int = 0
    use_windows: bool = True
    use_decomposition: bool = True
    prune_pairs: bool = True
    scale_sizes: bool = True
    symmetry_breaking: bool = True
    warm_start: bool = True
    exact_offsets: bool = True
    local_search: bool = True
    pad_sizes: bool = True
    fewer_steps: bool = False
    step_fraction: float = 0.0
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, not {self.solver!r}")
        if self.plan_mode not in PLAN_MODES:
            raise ValueError(f"plan_mode must be one of {PLAN_MODES}, not {self.plan_mode!r}")
        if self.time_limit < 0:
            raise ValueError("time_limit must be >= 0")
        if not 0.0 <= self.step_fraction <= 1.0:
            raise ValueError("step_fraction must lie in [0, 1]")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
