"""Live ranges: the planner's one interval convention, half-open `[start, end)`.

A buffer live at steps `start, start + 1, ..., end - 1` has the range `[start, end)`: `end` is
the first step at which it is no longer live (one past its last use), as in Google's MiniMalloc
and Inductor's `LiveRange` (`torch/_inductor/codegen/memory_planning.py`). Its length is
`end - start`; `end == start` is an empty range (live at no step).

Two ranges overlap when each starts before the other ends. A buffer whose last use is at step
t (`end == t + 1`) and one made at step t (`start == t`) therefore overlap: an operation's
inputs and outputs are live together, so they never share memory.

Everything that builds or compares lifetimes (the graph's timing model, the heuristics, the
validator, the solver models, the recomputation model, the arena code) uses this convention
and the helpers here. Not a live range: an operation's step window (`Graph.windows`), which is
the domain `(earliest, latest)` of a position variable, both ends possible positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol


class Span(Protocol):
    """Anything with a half-open `[start, end)` range of steps (`LiveRange`, `Item`)."""

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


def overlaps(a: Span, b: Span) -> bool:
    """Whether `a` and `b` are live at a common step."""
    return a.start < b.end and b.start < a.end


def covers(a: Span, step: int) -> bool:
    """Whether `a` is live at `step`."""
    return a.start <= step < a.end


class LiveRange(NamedTuple):
    """Steps `[start, end)` at which a buffer is live (a tuple: `(start, end)` compares equal)."""

    start: int
    end: int

    @classmethod
    def of_steps(cls, first: int, last: int) -> LiveRange:
        """The range from step `first` through step `last`, both live."""
        return cls(first, last + 1)

    @property
    def length(self) -> int:
        return max(0, self.end - self.start)

    @property
    def empty(self) -> bool:
        return self.end <= self.start

    def overlaps(self, other: Span) -> bool:
        return overlaps(self, other)

    def covers(self, step: int) -> bool:
        return covers(self, step)

    def hull(self, steps: Iterable[int]) -> LiveRange:
        """The smallest range holding this one and live at each of `steps` too."""
        steps = list(steps)
        if not steps:
            return self
        return LiveRange(min(self.start, *steps), max(self.end, max(steps) + 1))

    def clipped(self, steps: int) -> LiveRange:
        """This range within `[0, steps)` (empty when it lies outside)."""
        return LiveRange(max(self.start, 0), min(self.end, steps))


__all__ = ["LiveRange", "Span", "covers", "overlaps"]
