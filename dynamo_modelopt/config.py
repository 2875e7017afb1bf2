"""Options of the `modelopt` backend, as passed through `torch.compile(..., options={...})`.

Each option is defined once, as a field of `ModeloptConfig` with its default, a one-line help
and what it allows (`Allowed`); the validator, its error messages and `options_table()` (the
README's table) all read them from there.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from .planner.options import PLAN_MODES, SOLVERS, PlannerOptions

ARENA_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Allowed:
    """What one option accepts: its type, and its choices or its range."""

    kind: type  # bool, int, float, str or tuple (of floats)
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the range excludes `low`
    optional: bool = False  # None is accepted too

    def describe(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(f'"{c}"' for c in self.choices)
        elif self.kind is tuple:
            text = "a number or a tuple of numbers"
        else:
            text = {bool: "True or False", int: "an int", float: "a number", str: "a string"}[
                self.kind
            ]
        if self.low is not None and self.high is not None:
            text += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            text += f" {'>' if self.low_open else '>='} {self.low:g}"
        return text + (" or None" if self.optional else "")

    def check(self, name: str, value: Any) -> Any:
        """`value` as the option holds it; a ValueError or TypeError naming the option if it is
        not allowed."""
        if value is None and self.optional:
            return None
        if self.kind is tuple:
            items = value if isinstance(value, (list, tuple)) else (value,)
            return tuple(self._scalar(name, value, float, v) for v in items)
        return self._scalar(name, value, self.kind, value)

    def _scalar(self, name: str, whole: Any, kind: type, value: Any) -> Any:
        # bool is an int to Python, not an option's number; strings are never bools
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind in (int, float):
            number = (int,) if kind is int else (int, float)
            ok = isinstance(value, number) and not isinstance(value, bool)
        else:
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            ok = isinstance(value, str)
        if not ok:
            raise TypeError(self._message(name, whole))
        if kind is float:
            value = float(value)
        if self.choices and value not in self.choices:
            raise ValueError(self._message(name, whole))
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise ValueError(self._message(name, whole))
        if self.high is not None and value > self.high:
            raise ValueError(self._message(name, whole))
        return value

    def _message(self, name: str, value: Any) -> str:
        return (
            f"modelopt: option {name}={value!r} ({type(value).__name__}) is not allowed: "
            f"it must be {self.describe()}"
        )


def _option(default: Any, help: str, allowed: Allowed) -> Any:
    return field(default=default, metadata={"help": help, "allowed": allowed})


def _choice(choices: tuple[str, ...], help: str) -> Any:
    """An option that takes one of `choices`, the first by default."""
    return _option(choices[0], help, Allowed(str, choices=choices))


@dataclass(frozen=True)
class ModeloptConfig:
    """Everything that changes what the backend plans; see `options_table()` for each option.
    Unknown option names and values an option does not allow are errors, raised when the
    config is built (the backend's first call)."""

    solver: str = _choice(
        SOLVERS,
        '"auto": Gurobi where its license fits the model, else CP-SAT; "heuristic": no solver '
        "(the best memory-aware topological sort).",
    )
    plan_mode: str = _choice(
        PLAN_MODES,
        '"two_stage": order, then offsets; "joint": both in one model (the option `mode` is '
        "its deprecated name).",
    )
    time_limit: float = _option(
        5.0, "Seconds per graph given to the solver.", Allowed(float, low=0.0)
    )
    relative_gap: float = _option(
        0.0,
        "Stop once the plan is proved within this fraction of optimal.",
        Allowed(float, low=0.0, high=1.0),
    )
    threads: int = _option(2, "Solver workers.", Allowed(int, low=1))
    seed: int = _option(
        0, "Solver random seed (same seed and threads, same plan).", Allowed(int, low=0)
    )
    reorder: bool = _option(
        True,
        "Impose the planned order on Inductor's fused nodes (False keeps Inductor's order but "
        "still reports on it).",
        Allowed(bool),
    )
    strict: bool = _option(
        False,
        "Raise instead of falling back to plain Inductor or substituting a setting or solver "
        "(meant for tests).",
        Allowed(bool),
    )
    settings: str = _option(
        "auto",
        '"auto": plan the memory-relevant alternatives, build the lowest predicted peak whose '
        'modelled run time is within `max_recompute_overhead`; "default": Inductor\'s settings '
        'only; a candidate\'s name ("no_layout_opt", "budget_0.5", "planned_saves", ...) forces '
        "it.",
        Allowed(str),
    )
    max_recompute_overhead: float = _option(
        0.05,
        "Extra run time allowed for a lower peak (0.05 = 5%), by the run-time model; the "
        "compile-time veto holds the measurement to one point below it.",
        Allowed(float, low=0.0),
    )
    peak_tolerance: float = _option(
        0.02,
        'In "auto", candidates within this fraction of the lowest peak compete on peak times '
        "run time (0 takes the lowest peak).",
        Allowed(float, low=0.0),
    )
    activation_budgets: tuple[float, ...] = _option(
        (0.5,),
        "The activation memory budgets tried in training.",
        Allowed(tuple, low=0.0, high=1.0, low_open=True),
    )
    plan_recomputation: bool = _option(
        True,
        'In training, also try the planner\'s own choice of what to recompute ("planned_saves").',
        Allowed(bool),
    )
    recompute_mispredicted: bool = _option(
        False,
        "Let that plan rerun grouped convolutions and attention too (FLOPs misjudge their run "
        "time).",
        Allowed(bool),
    )
    arena: str = _choice(
        ARENA_MODES,
        '"auto": one arena per device for intermediate buffers, at the planned offsets, where '
        'predicted not to raise the peak; "on": always; "off": never.',
    )
    measure_workspace: bool = _option(
        True,
        "Run each extern kernel once at compile time to measure its workspace (False: fixed "
        "rules, CPU kernels only).",
        Allowed(bool),
    )
    measure_kernel_time: bool = _option(
        True,
        "Time those runs, and price extern kernels by the measurement instead of their FLOPs.",
        Allowed(bool),
    )
    kernel_time_cache: bool = _option(
        True,
        "Keep measured kernel times on disk per machine (under `$MODELOPT_CACHE_DIR`): each "
        "kernel is timed once, and every later compile prices it the same, so the same graph "
        "chooses the same settings in every process.",
        Allowed(bool),
    )
    timing_rounds: int = _option(
        0,
        'In "auto", a veto: run the winner beside the defaults (built too: one more compile) '
        "this many rounds, up to 3 batches, and drop it where a sign test puts it over budget "
        "at 95% confidence (0: the run-time model alone decides).",
        Allowed(int, low=0),
    )
    accumulate_in_place: bool = _option(
        True,
        "Add a matrix product into a full-size addend that dies there (`addend.addmm_`) "
        "instead of into a new buffer.",
        Allowed(bool),
    )
    backward_layout_candidates: bool = _option(
        True,
        'In "auto", with convolutions in training, also try recomputing candidates with the '
        "backward compiled without layout optimization.",
        Allowed(bool),
    )
    decision_cache: bool = _option(
        True,
        'In "auto", remember the settings chosen for each graph on disk (under '
        "`$MODELOPT_CACHE_DIR`, else `modelopt` in Inductor's cache directory).",
        Allowed(bool),
    )
    save_problems: str | None = _option(
        None,
        "A directory where each graph's planning problem and plan are written as JSON.",
        Allowed(str, optional=True),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = f.metadata["allowed"].check(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        try:
            self.planner_options()  # the planner checks its own options
        except ValueError as exc:
            raise ValueError(f"modelopt: {exc}") from exc

    def planner_options(self) -> PlannerOptions:
        return PlannerOptions(
            solver=self.solver,
            plan_mode=self.plan_mode,
            time_limit=self.time_limit,
            relative_gap=self.relative_gap,
            threads=self.threads,
            seed=self.seed,
        )

    @classmethod
    def from_options(cls, options: dict[str, Any] | ModeloptConfig | None) -> ModeloptConfig:
        if isinstance(options, ModeloptConfig):
            return options
        if options is not None and not isinstance(options, dict):
            raise TypeError(
                f"modelopt: options must be a dict or a ModeloptConfig, not "
                f"{type(options).__name__}"
            )
        options = dict(options or {})
        if "mode" in options:
            # torch.compile's own `mode` is another thing; the planner's was renamed
            if "plan_mode" in options:
                raise ValueError("modelopt: give plan_mode only (mode is its deprecated name)")
            warnings.warn(
                "modelopt: the option 'mode' is deprecated, use 'plan_mode'",
                FutureWarning,
                stacklevel=3,
            )
            options["plan_mode"] = options.pop("mode")
        known = [f.name for f in fields(cls)]
        for name in sorted(set(options) - set(known)):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"modelopt: unknown option {name!r}{hint}; valid options are {sorted(known)}"
            )
        return cls(**options)

    def replace(self, **changes: Any) -> ModeloptConfig:
        return dataclasses.replace(self, **changes)

    def cache_key(self) -> str:
        """Stable text of every field, for Inductor's cache keys."""
        return repr(sorted(dataclasses.asdict(self).items()))


def _default_text(value: Any) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{value!r}`"


def options_table() -> str:
    """The options as a Markdown table: name, default, and one line of what each does."""
    lines = ["| option | default | what it does |", "|---|---|---|"]
    for f in fields(ModeloptConfig):
        allowed = f.metadata["allowed"].describe()
        help_text = f"{f.metadata['help']} Allowed: {allowed}."
        lines.append(f"| `{f.name}` | {_default_text(f.default)} | {help_text} |")
    return "\n".join(lines) + "\n"
