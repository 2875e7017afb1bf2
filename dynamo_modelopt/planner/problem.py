"""The planning problem: operations, tensors and their lifetimes; and the plan that solves it.

Torch-free on purpose: a `Problem` can be saved from a real graph as JSON and replayed by the
CLI (`python -m dynamo_modelopt.planner INSTANCE.json`) or the benchmark without PyTorch.

Timing model (what the generated code does): operations run one per timestep in `Plan.order`.
A tensor is live from the step of its producer (its memory is allocated before the producer
writes it) through the step of its last consumer (freed after that operation returns).

Interval convention: a lifetime is the half-open live range `[start, end)` of the steps at which
the tensor is live, `end` one past its last live step, as in MiniMalloc and Inductor's
`LiveRange`; two tensors may share memory only when their ranges do not overlap, so one freed
after step t (`end == t + 1`) and one made at step t (`start == t`) never do. The planner uses
this convention everywhere (`intervals.LiveRange` and its `overlaps` / `covers` helpers).
- A graph input (`producer is None`) is live from step 0.
- `live_to_end` tensors (graph outputs, saved activations) stay live to the last step.
- `resident` tensors occupy memory for the whole graph whatever their uses.
- A tensor with a producer and no consumers (an extern kernel's workspace, an unused output)
  is live during its producer's step only.
- `alias_of` names the tensor whose storage this one shares (a view, an in-place reuse): the
  planner folds aliases into their root, whose life then covers every alias's uses.
- `placed` tensors get an address in the arena; the others (inputs, parameters) live in memory
  that the caller owns, and count towards the peak but not the arena.

Schema of the JSON form (`Problem.to_json` / `Problem.from_json`), version 1::

    {"schema": "dynamo_modelopt.problem/1", "name": str,
     "operations": [{"name": str}],                  # in the given (program) order
     "tensors": [{"name": str, "size": int, "producer": str|null, "consumers": [str],
                  "alignment": int, "alias_of": str|null, "live_to_end": bool,
                  "resident": bool, "placed": bool}],
     "precedences": [[before, after]],               # extra ordering edges
     "meta": {...}}                                  # free-form provenance (graph kind, model)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROBLEM_SCHEMA = "dynamo_modelopt.problem/1"
PLAN_SCHEMA = "dynamo_modelopt.plan/1"


@dataclass(frozen=True)
class Operation:
    """One step of the graph: a fused kernel, an extern call, a copy."""

    name: str


@dataclass(frozen=True)
class Tensor:
    """One allocation the graph makes or receives, sized in bytes."""

    name: str
    size: int
    producer: str | None = None
    consumers: tuple[str, ...] = ()
    alignment: int = 1
    alias_of: str | None = None
    live_to_end: bool = False
    resident: bool = False
    placed: bool = True

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"tensor {self.name!r} has negative size {self.size}")
        if self.alignment < 1:
            raise ValueError(f"tensor {self.name!r} has alignment {self.alignment} < 1")
        # Accept any iterable for consumers but store a tuple so the record stays hashable.
        object.__setattr__(self, "consumers", tuple(self.consumers))


@dataclass
class Problem:
    """Operations in their given order, the tensors between them, and extra precedences."""

    operations: list[Operation]
    tensors: list[Tensor]
    precedences: list[tuple[str, str]] = field(default_factory=list)
    name: str = "problem"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check()

    # -- structure -------------------------------------------------------------------------
    @property
    def op_names(self) -> list[str]:
        return [op.name for op in self.operations]

    def tensor(self, name: str) -> Tensor:
        return self._tensor_index()[name]

    def _tensor_index(self) -> dict[str, Tensor]:
        return {t.name: t for t in self.tensors}

    def check(self) -> None:
        """Raise ValueError on dangling names, duplicates or alias cycles."""
        ops = self.op_names
        if len(set(ops)) != len(ops):
            raise ValueError("duplicate operation names")
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise ValueError("duplicate tensor names")
        op_set = set(ops)
        index = self._tensor_index()
        for t in self.tensors:
            if t.producer is not None and t.producer not in op_set:
                raise ValueError(f"tensor {t.name!r}: unknown producer {t.producer!r}")
            for c in t.consumers:
                if c not in op_set:
                    raise ValueError(f"tensor {t.name!r}: unknown consumer {c!r}")
            if t.alias_of is not None and t.alias_of not in index:
                raise ValueError(f"tensor {t.name!r}: unknown alias base {t.alias_of!r}")
        for a, b in self.precedences:
            if a not in op_set or b not in op_set:
                raise ValueError(f"precedence ({a!r}, {b!r}) names an unknown operation")
        for t in self.tensors:  # alias chains must end
            seen = {t.name}
            cur = t
            while cur.alias_of is not None:
                if cur.alias_of in seen:
                    raise ValueError(f"alias cycle through {t.name!r}")
                seen.add(cur.alias_of)
                cur = index[cur.alias_of]

    def alias_root(self, name: str) -> str:
        index = self._tensor_index()
        while index[name].alias_of is not None:
            name = index[name].alias_of  # type: ignore[assignment]
        return name

    def edges(self) -> list[tuple[str, str]]:
        """Data edges producer -> consumer (through aliases) plus the extra precedences,
        deduplicated."""
        out: set[tuple[str, str]] = set()
        for t in self.tensors:
            if t.producer is None:
                continue
            for c in t.consumers:
                if c != t.producer:
                    out.add((t.producer, c))
        out.update((a, b) for a, b in self.precedences if a != b)
        return sorted(out)

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": PROBLEM_SCHEMA,
            "name": self.name,
            "operations": [asdict(op) for op in self.operations],
            "tensors": [{**asdict(t), "consumers": list(t.consumers)} for t in self.tensors],
            "precedences": [list(p) for p in self.precedences],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        if data.get("schema") != PROBLEM_SCHEMA:
            raise ValueError(f"not a {PROBLEM_SCHEMA} document: schema={data.get('schema')!r}")
        return cls(
            operations=[Operation(**op) for op in data["operations"]],
            tensors=[Tensor(**{**t, "consumers": tuple(t["consumers"])}) for t in data["tensors"]],
            precedences=[(a, b) for a, b in data.get("precedences", [])],
            name=data.get("name", "problem"),
            meta=data.get("meta", {}),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Problem:
        """Load from a JSON string or a path to a JSON file."""
        if isinstance(source, Path) or not str(source).lstrip().startswith("{"):
            source = Path(source).read_text()
        return cls.from_dict(json.loads(source))


@dataclass
class Plan:
    """An order of the operations and an arena offset for every placed tensor (alias roots)."""

    order: list[str]
    offsets: dict[str, int]
    arena_bytes: int
    peak_bytes: int
    lower_bound_bytes: int
    solver: str
    status: str  # "optimal" | "time_limit" | "heuristic" | "feasible"
    solve_seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Relative gap of the peak to the proved lower bound (0.0 = proved optimal)."""
        if self.peak_bytes <= 0:
            return 0.0
        return max(0.0, (self.peak_bytes - self.lower_bound_bytes) / self.peak_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PLAN_SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        data = {k: v for k, v in data.items() if k != "schema"}
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def make_problem(
    operations: Iterable[str],
    tensors: Iterable[Tensor],
    precedences: Iterable[tuple[str, str]] = (),
    name: str = "problem",
) -> Problem:
    """Shorthand for tests and examples: operations by name."""
    return Problem(
        operations=[Operation(o) for o in operations],
        tensors=list(tensors),
        precedences=list(precedences),
        name=name,
    )
