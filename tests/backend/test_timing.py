"""Candidates run and timed at compile time: the caller's state untouched, the choice by the
measurement, candidates that cannot run never chosen, and the reasons it is skipped."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import dynamo_modelopt
from dynamo_modelopt import timing
from dynamo_modelopt.decide import (
    Candidate,
    Trial,
    choose,
    contested,
    prepare,
    summarize,
    time_trials,
)
from dynamo_modelopt.inductor.saved_set import PlannedPartitioner
from dynamo_modelopt.timing import REAL_STEP_MARGIN

from .models import make_case
from .trials import make_trial


def _trial(name: str, peak: int, runtime: float, compiled: Any = None) -> Trial:
    return make_trial(name, peak, runtime, compiled=compiled, runtime_model="cpu")


def _graph(x: torch.Tensor, weight: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
    """Updates a buffer in place and draws random numbers, like batch norm and dropout."""
    running.add_(1.0)
    return F.dropout(x @ weight, p=0.5).sum()


def test_running_a_candidate_leaves_the_callers_state_as_it_was() -> None:
    x, running = torch.randn(4, 8), torch.zeros(3)
    weight = torch.randn(8, 8, requires_grad=True)
    rng = torch.get_rng_state()
    step = timing.step_of(_graph, [x, weight, running])
    result = timing.time_steps([step, step], rounds=3, device=torch.device("cpu"))
    assert len(result.rounds) == 3 and not result.failed
    assert all(seconds > 0 for r in result.rounds for seconds in r)
    assert torch.equal(running, torch.zeros(3))  # updated on a clone
    assert weight.grad is None  # gradients returned, not accumulated
    assert torch.equal(torch.get_rng_state(), rng)


def test_rounds_rotate_and_ratios_are_read_per_round() -> None:
    """Each round starts one step later; a step's ratio is taken against the first step's
    time in the same round, and its quantiles lie between the rounds' ratios."""
    calls: list[str] = []

    def step(name: str) -> Any:
        return lambda: calls.append(name)

    steps = [step("a"), step("b"), step("c")]
    result = timing.time_steps(steps, rounds=3, device=torch.device("cpu"))
    warm_up, rounds = ["a", "b", "c"], ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert calls == [*warm_up, *rounds]
    table = timing.Timing([[1.0, 1.1, 2.0], [2.0, 2.0, 4.0], [1.0, 1.3, 2.0]])
    assert table.ratios_to_first(1) == pytest.approx([1.1, 1.0, 1.3])
    assert timing.quantile_of(table.ratios_to_first(1), 0.5) == pytest.approx(1.1)
    assert timing.quantile_of(table.ratios_to_first(1), 0.75) == pytest.approx(1.2)
    assert timing.quantile_of(table.ratios_to_first(1), 1.0) == pytest.approx(1.3)
    assert timing.quantile_of(table.ratios_to_first(2), 0.75) == pytest.approx(2.0)
    assert len(result.rounds) == 3


def test_a_candidate_that_fails_to_run_is_never_chosen() -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    default = _trial("default", 100, 1.0, compiled=_graph)
    lower = _trial("lower", 50, 1.0, compiled=broken)
    inputs = [torch.randn(4, 8), torch.randn(8, 8, requires_grad=True), torch.zeros(3)]
    assert time_trials([default, lower], inputs, rounds=2) is None
    assert lower.run_error is not None and "boom" in lower.run_error
    assert default.measured_ratio == 1.0
    assert choose([default, lower], 0.05) is default
    summary = summarize(default, [default, lower], 0.05)
    assert "boom" in summary["alternatives"]["lower"]["run_error"]


def test_a_contested_candidate_is_timed_again_until_its_rounds_settle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "lower" was within the 5% budget in some rounds only: it is run again beside the
    defaults, and its later rounds decide; "higher" (as open, but no lower peak than the
    defaults') and "slow" (over budget in every round) are not run again."""
    default = _trial("default", 100, 1.0)
    lower, higher, slow = (
        _trial("lower", 50, 1.0),
        _trial("higher", 120, 1.0),
        _trial("slow", 40, 1.0),
    )
    first = {"lower": [1.0, 1.1, 1.02, 1.09], "higher": [1.02, 1.08, 1.0, 1.1], "slow": [1.3] * 4}
    timed: list[list[int]] = []

    def scripted(steps: list[Any], rounds: int, device: torch.device) -> timing.Timing:
        timed.append([len(steps), rounds])
        if len(timed) == 1:
            columns = [[1.0] * 4, first["lower"], first["higher"], first["slow"]]
        else:
            columns = [[1.0] * 4, [1.01] * 4]
        return timing.Timing([list(r) for r in zip(*columns, strict=True)])

    monkeypatch.setattr(timing, "time_steps", scripted)
    trials = [default, lower, higher, slow]
    assert time_trials(trials, [torch.randn(2)], rounds=4, max_recompute_overhead=0.05) is None
    assert timed == [[4, 4], [2, 4]]  # the defaults and "lower" only, once more
    assert len(lower.measured_ratios) == 8 and len(higher.measured_ratios) == 4
    assert lower.measured_ratio_high is not None and lower.measured_ratio_high <= 1.05
    assert choose(trials, 0.05) is lower
    summary = summarize(lower, trials, 0.05)["alternatives"]
    assert [summary[n]["timed_rounds"] for n in ("lower", "higher", "slow")] == [8, 4, 4]
    # without the budget, one batch of rounds only
    for trial in trials:
        trial.measured_ratios, trial.measured_rounds = [], []
    timed.clear()
    assert time_trials(trials, [torch.randn(2)], rounds=4) is None
    assert timed == [[4, 4]]
    assert choose(trials, 0.05) is default


def test_a_candidate_that_could_not_win_within_the_tolerance_is_not_contested() -> None:
    """ "near" is open against the budget and 0.8% below "fast"'s peak: with a 2% tolerance
    the faster "fast" would stay chosen even if "near" were within budget, so there is
    nothing to time again; with none, "near" would win and is contested."""
    default, fast, near = (
        _trial(n, p, 1.0) for n, p in (("default", 1000), ("fast", 600), ("near", 595))
    )
    for trial, ratios in ((default, [1.0] * 4), (fast, [0.9] * 4), (near, [1.0, 1.1, 1.02, 1.09])):
        trial.record_rounds([0.1] * 4, ratios)
    trials = [default, fast, near]
    assert contested(trials, 0.05, peak_tolerance=0.02) == []
    assert contested(trials, 0.05, peak_tolerance=0.0) == [near]


def test_a_measured_ratio_must_leave_the_margin_for_the_real_step() -> None:
    """Timed at compile time a setting reads below its cost in a real step, so a candidate
    measured within the budget but not within it less `REAL_STEP_MARGIN` is not taken."""
    default, near = _trial("default", 100, 1.0), _trial("near", 80, 1.0)
    default.measured_ratio = default.measured_ratio_high = 1.0
    near.measured_ratio = 1.04
    near.measured_ratio_high = 1.0 + 0.05 - REAL_STEP_MARGIN / 2
    assert choose([default, near], 0.05) is default
    near.measured_ratio_high = 1.0 + 0.05 - 2 * REAL_STEP_MARGIN
    assert choose([default, near], 0.05) is near


def test_choice_reads_the_measured_ratio_where_both_were_run() -> None:
    default = _trial("default", 100, 1.0)
    estimated_fast = _trial("a", 80, 1.0)  # estimated free, measured 8% slower
    estimated_slow = _trial("b", 90, 1.2)  # estimated 20% slower, measured 2% slower
    default.measured_ratio, estimated_fast.measured_ratio = 1.0, 1.03
    estimated_slow.measured_ratio = 1.02
    # the budget holds the upper quartile of the rounds: "a" was over it in too many
    default.measured_ratio_high, estimated_fast.measured_ratio_high = 1.0, 1.08
    estimated_slow.measured_ratio_high = 1.03
    chosen = choose([default, estimated_fast, estimated_slow], 0.05)
    assert chosen is estimated_slow
    summary = summarize(chosen, [default, estimated_fast, estimated_slow], 0.05)
    assert summary["predicted_overhead"] == pytest.approx(0.02)
    assert summary["estimated_overhead"] == pytest.approx(0.2)
    assert "measured at compile time" in summary["why"]
    # without measurements, the estimates decide
    for trial in (default, estimated_fast, estimated_slow):
        trial.measured_ratio = trial.measured_ratio_high = None
    assert choose([default, estimated_fast, estimated_slow], 0.05) is estimated_fast


def test_planned_saves_budget_shrinks_to_what_the_measurement_leaves() -> None:
    """no_layout_opt was estimated +1% but measured +3%: its plan may add 1% (what the budget
    leaves once the margin for the real step is set aside), not 3%."""
    default, no_layout = _trial("default", 100, 1.0), _trial("no_layout_opt", 90, 1.01)
    partitioner = PlannedPartitioner(0.05)
    combined = Candidate("no_layout_opt+planned_saves", {"custom_partitioner_fn": partitioner})
    timed: list[list[str]] = []

    def time_now(trials: list[Trial]) -> None:
        timed.append([t.candidate.name for t in trials])
        default.measured_ratio_high, no_layout.measured_ratio_high = 1.0, 1.03

    prepare(combined, [default, no_layout], 0.05, time_now)
    assert timed == [["default", "no_layout_opt"]]
    assert partitioner.budget_seconds == pytest.approx(0.05 - REAL_STEP_MARGIN - 0.03)


def test_reasons_not_to_run_the_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = [torch.randn(4, 8)]
    assert timing.why_not_timed(inputs, 1 << 20, rounds=5) is None
    assert "turned off" in str(timing.why_not_timed(inputs, 1 << 20, rounds=0))
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(torch.randn(4, 8))]
    assert "fake" in str(timing.why_not_timed(fake, 1 << 20, rounds=5))
    monkeypatch.setattr(timing, "free_bytes", lambda device: 1 << 20)
    assert "needed" in str(timing.why_not_timed(inputs, 1 << 20, rounds=5))


def test_backend_runs_the_candidates_and_stays_correct() -> None:
    """ConvBN in training: every candidate timed; grads and running statistics as eager's
    (the timing runs touched only copies)."""
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    model, inputs = make_case("convbn")
    eager_model, _ = make_case("convbn")
    model.train()
    eager_model.train()
    compiled = torch.compile(model, backend="modelopt", options={"strict": True})
    compiled(*inputs).backward()
    eager_model(*inputs).backward()
    settings = dynamo_modelopt.get_reports()[0].details["settings"]
    assert settings["not_timed"] is None
    assert len(settings["alternatives"]) > 1
    for alternative in settings["alternatives"].values():
        assert alternative["measured_ratio"] is not None and alternative["run_error"] is None
    for (name, got), want in zip(
        model.state_dict().items(), eager_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)
    for (name, p), q in zip(model.named_parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_backend_says_why_it_did_not_run_the_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "free_bytes", lambda device: 0)
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    model, inputs = make_case("convbn")
    model.train()
    compiled = torch.compile(model, backend="modelopt", options={"strict": True})
    compiled(*inputs).backward()
    settings = dynamo_modelopt.get_reports()[0].details["settings"]
    assert "free" in settings["not_timed"]
    assert all(a["measured_ratio"] is None for a in settings["alternatives"].values())
    if not settings["why"].startswith("no alternative"):  # run time decided: say on what
        assert "estimated run times" in settings["why"]
