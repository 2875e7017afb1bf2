"""The winner run beside the defaults at compile time: the caller's state untouched, a veto
only where the measurement is significantly over budget, candidates that cannot run never
chosen, and the reasons it is skipped."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import dynamo_modelopt
from dynamo_modelopt import timing
from dynamo_modelopt.decide import Trial, choose, summarize, veto_by_timing
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
    assert choose([default, lower], 0.05) is lower
    assert veto_by_timing(lower, default, inputs, rounds=2, max_recompute_overhead=0.05) is None
    assert lower.run_error is not None and "boom" in lower.run_error
    assert choose([default, lower], 0.05) is default
    summary = summarize(default, [default, lower], 0.05)
    assert "boom" in summary["alternatives"]["lower"]["run_error"]


def test_the_sign_test() -> None:
    """The chance of at least k of n rounds above the limit were the median at the limit."""
    assert timing.sign_test_p_value([1.1] * 7, 1.04) == pytest.approx(1 / 128)
    assert timing.sign_test_p_value([1.1] * 6 + [1.0], 1.04) == pytest.approx(8 / 128)
    assert timing.sign_test_p_value([1.0] * 7, 1.04) == 1.0
    assert timing.sign_test_p_value([], 1.04) == 1.0


def _scripted(monkeypatch: pytest.MonkeyPatch, batches: list[list[float]]) -> list[int]:
    """`time_steps` answering each batch with the defaults at 1 s and the winner's ratios."""
    timed: list[int] = []

    def scripted(steps: list[Any], rounds: int, device: torch.device) -> timing.Timing:
        ratios = batches[len(timed)]
        timed.append(len(ratios))
        return timing.Timing([[1.0, r] for r in ratios])

    monkeypatch.setattr(timing, "time_steps", scripted)
    return timed


def test_noise_inside_the_budget_keeps_the_models_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Llama-style decoder's case: a median of 0.988 whose upper quartile read 1.0455
    against the 1.04 limit. The old quartile rule threw the -27% away; a sign test keeps it."""
    default, lower = _trial("default", 100, 1.0), _trial("lower", 73, 1.0)
    rounds = [0.95, 0.97, 0.98, 0.988, 0.99, 1.046, 1.05]
    timed = _scripted(monkeypatch, [rounds])
    assert veto_by_timing(lower, default, [torch.randn(2)], 7, 0.05) is None
    assert timed == [7] and lower.veto is None
    assert lower.measured_ratio == pytest.approx(0.988)
    assert choose([default, lower], 0.05) is lower


def test_a_winner_significantly_over_budget_gives_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round over the limit: dropped at 95% confidence, and the next by the model wins."""
    default, lowest, next_best = (
        _trial("default", 100, 1.0),
        _trial("lowest", 60, 1.0),
        _trial("next_best", 80, 1.0),
    )
    _scripted(monkeypatch, [[1.08] * 7])
    assert choose([default, lowest, next_best], 0.05) is lowest
    veto_by_timing(lowest, default, [torch.randn(2)], 7, 0.05)
    assert lowest.veto is not None and "sign test" in lowest.veto
    assert choose([default, lowest, next_best], 0.05) is next_best
    summary = summarize(next_best, [default, lowest, next_best], 0.05)
    assert summary["alternatives"]["lowest"]["veto"] == lowest.veto
    assert "dropped by its measurement" in summary["why"]


def test_an_open_measurement_is_timed_again_and_then_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A median over the limit without significance: more batches, up to three; the
    evidence of all of them decides, and without significance the model's choice stands."""
    default, lower = _trial("default", 100, 1.0), _trial("lower", 60, 1.0)
    open_batch = [1.0, 1.02, 1.05, 1.06, 1.07]  # 3 of 5 above 1.04
    timed = _scripted(monkeypatch, [open_batch] * 3)
    veto_by_timing(lower, default, [torch.randn(2)], 5, 0.05)
    assert timed == [5, 5, 5] and len(lower.measured_ratios) == 15
    assert lower.veto is None  # 9 of 15 above: p = 0.30
    # four of five above in each batch: 8 of 10 (p = 0.055) is not yet enough, 12 of 15
    # (p = 0.018) is
    default, lower = _trial("default", 100, 1.0), _trial("lower", 60, 1.0)
    timed = _scripted(monkeypatch, [[1.0, 1.05, 1.05, 1.06, 1.07]] * 3)
    veto_by_timing(lower, default, [torch.randn(2)], 5, 0.05)
    assert timed == [5, 5, 5] and lower.veto is not None


def test_a_measured_ratio_must_leave_the_margin_for_the_real_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Timed at compile time a setting reads below its cost in a real step, so rounds within
    the budget but not within it less `REAL_STEP_MARGIN` drop it."""
    default, near = _trial("default", 100, 1.0), _trial("near", 80, 1.0)
    _scripted(monkeypatch, [[1.0 + 0.05 - REAL_STEP_MARGIN / 2] * 7])
    veto_by_timing(near, default, [torch.randn(2)], 7, 0.05)
    assert near.veto is not None and choose([default, near], 0.05) is default
    default, near = _trial("default", 100, 1.0), _trial("near", 80, 1.0)
    _scripted(monkeypatch, [[1.0 + 0.05 - 2 * REAL_STEP_MARGIN] * 7])
    veto_by_timing(near, default, [torch.randn(2)], 7, 0.05)
    assert near.veto is None and choose([default, near], 0.05) is near


def test_a_measurement_never_picks_a_candidate() -> None:
    """The model chooses; a measured ratio, however fast, moves nothing."""
    default = _trial("default", 100, 1.0)
    modelled_fast = _trial("a", 80, 1.0)
    modelled_slow = _trial("b", 70, 1.2)  # over the modelled budget
    modelled_slow.measured_ratio = 0.9
    chosen = choose([default, modelled_fast, modelled_slow], 0.05)
    assert chosen is modelled_fast
    modelled_fast.measured_ratio = 1.02
    summary = summarize(chosen, [default, modelled_fast, modelled_slow], 0.05)
    assert summary["predicted_overhead"] == pytest.approx(0.02)
    assert summary["estimated_overhead"] == pytest.approx(0.0)
    assert "modelled run times" in summary["why"]


def test_reasons_not_to_run_the_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = [torch.randn(4, 8)]
    assert timing.why_not_timed(inputs, 1 << 20, rounds=5) is None
    assert "turned off" in str(timing.why_not_timed(inputs, 1 << 20, rounds=0))
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(torch.randn(4, 8))]
    assert "fake" in str(timing.why_not_timed(fake, 1 << 20, rounds=5))
    monkeypatch.setattr(timing, "free_bytes", lambda device: 1 << 20)
    assert "needed" in str(timing.why_not_timed(inputs, 1 << 20, rounds=5))


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the candidates the backend builds (compiles in full), as it builds them."""
    from dynamo_modelopt import backend

    built: list[str] = []
    compile_trial = backend.compile_trial

    def counting(candidate: Any, *args: Any, build: bool = True, **kwargs: Any) -> Any:
        if build:
            built.append(candidate.name)
        return compile_trial(candidate, *args, build=build, **kwargs)

    monkeypatch.setattr(backend, "compile_trial", counting)
    return built


def test_backend_plans_every_candidate_and_builds_the_winner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ConvBN in training: every candidate planned, only the winner (and the defaults it is
    timed beside) built; grads and running statistics as eager's (the timing runs touched
    only copies); the compile's seconds split by stage."""
    built = _count_builds(monkeypatch)
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    model, inputs = make_case("convbn")
    eager_model, _ = make_case("convbn")
    model.train()
    eager_model.train()
    options = {"strict": True, "timing_rounds": 7}
    compiled = torch.compile(model, backend="modelopt", options=options)
    compiled(*inputs).backward()
    eager_model(*inputs).backward()
    settings = dynamo_modelopt.get_reports()[0].details["settings"]
    assert len(settings["alternatives"]) > 1
    chosen = settings["chosen"]
    assert built == ([chosen] if chosen == "default" else [chosen, "default"])
    for name, alternative in settings["alternatives"].items():
        measured = name == chosen and chosen != "default"
        assert (alternative["measured_ratio"] is not None) == measured, name
    assert set(settings["compile_seconds"]) == {"search", "solve", "build", "timing"}
    assert settings["compile_seconds"]["build"] > 0
    for (name, got), want in zip(
        model.state_dict().items(), eager_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)
    for (name, p), q in zip(model.named_parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_backend_says_why_it_did_not_run_the_winner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "free_bytes", lambda device: 0)
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    model, inputs = make_case("deep_mlp")
    model.train()
    options = {"strict": True, "timing_rounds": 7}
    compiled = torch.compile(model, backend="modelopt", options=options)
    compiled(*inputs).backward()
    settings = dynamo_modelopt.get_reports()[0].details["settings"]
    assert all(a["measured_ratio"] is None for a in settings["alternatives"].values())
    if settings["chosen"] != "default":
        assert "free" in settings["not_timed"]


def test_by_default_the_model_alone_decides_and_only_the_winner_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deep_mlp in training, default options: every candidate planned, one built, nothing
    timed, and the summary says so."""
    built = _count_builds(monkeypatch)
    model, inputs = make_case("deep_mlp")
    model.train()
    compiled = torch.compile(model, backend="modelopt")
    compiled(*inputs).backward()
    settings = dynamo_modelopt.get_reports()[0].details["settings"]
    assert len(settings["alternatives"]) > 1 and built == [settings["chosen"]]
    assert all(a["measured_ratio"] is None for a in settings["alternatives"].values())
    if settings["chosen"] != "default":
        assert "timing turned off" in settings["not_timed"]
    assert settings["compile_seconds"]["timing"] == 0.0
    if not settings["why"].startswith("no alternative"):  # run time decided: say on what
        assert "modelled run times" in settings["why"]
