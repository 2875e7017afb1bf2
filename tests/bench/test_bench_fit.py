"""bench.fit: the search for the largest batch on made-up totals, and one tiny end-to-end fit."""

import random
from pathlib import Path

import pytest
import torch
from torch import nn

import bench.fit
from bench.fit import FitSettings, fit_model, largest_fitting_batch, parse_bytes
from bench.models import TINY, ModelSpec
from bench.run import BenchSettings
from dynamo_modelopt.capture.joint import BackwardBoundary
from dynamo_modelopt.report import GraphInternals, GraphReport


def counting(total):
    calls = []

    def counted(batch: int) -> int:
        calls.append(batch)
        return total(batch)

    return counted, calls


def brute_force(total, cap: int, max_batch: int) -> int:
    return max((b for b in range(1, max_batch + 1) if total(b) <= cap), default=0)


def test_an_affine_total_is_found_from_two_probes_and_one_confirmation() -> None:
    total, calls = counting(lambda b: 100 + 10 * b)
    result = largest_fitting_batch(total, cap=1000, probes=(32, 64))
    assert result.largest == 90 and not result.exact and result.first_over is None
    assert calls == [32, 64, 90]  # the line's guess, confirmed; 91 is predicted over
    assert result.largest_total == 1000
    assert "91 predicted over" in result.describe()


def test_exact_tries_the_next_batch_too() -> None:
    result = largest_fitting_batch(lambda b: 100 + 10 * b, cap=1005, probes=(32, 64), exact=True)
    assert (result.largest, result.first_over, result.exact) == (90, 91, True)
    assert [b for b, _ in result.tried] == [32, 64, 90, 91]


def test_a_cap_below_the_probes_searches_down() -> None:
    result = largest_fitting_batch(lambda b: 500 + 100 * b, cap=1234, probes=(32, 64), exact=True)
    assert (result.largest, result.first_over) == (7, 8)


def test_nothing_fits_gives_zero() -> None:
    result = largest_fitting_batch(lambda b: 1000 * b, cap=500, probes=(2, 4), exact=True)
    assert (result.largest, result.first_over, result.exact) == (0, 1, True)


@pytest.mark.parametrize("seed", range(20))
def test_curved_and_noisy_totals_agree_with_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    base, slope, curve = rng.randint(0, 5000), rng.randint(1, 200), rng.random() * 2
    steps = [rng.randint(0, 50) for _ in range(600)]  # a monotone, bumpy extra

    def total(b: int) -> int:
        return base + slope * b + int(curve * b * b) + sum(steps[:b])

    cap = rng.randint(base, base + 100_000)
    result = largest_fitting_batch(
        total, cap, probes=(8, 16), max_batch=500, max_tries=40, exact=True
    )
    assert result.largest == brute_force(total, cap, 500)
    assert result.exact or result.largest == 500
    assert len(result.tried) <= 20


def test_a_total_that_cannot_be_evaluated_is_an_error_not_a_batch() -> None:
    result = largest_fitting_batch(lambda b: None, cap=10, probes=(1, 2))
    assert result.largest is None and "no total" in result.error


def test_the_try_budget_leaves_a_bracket() -> None:
    result = largest_fitting_batch(lambda b: b * b, cap=10**6, probes=(1, 2), max_tries=3)
    assert len(result.tried) == 3 and result.largest is not None
    assert result.largest**2 <= 10**6


def test_parse_bytes() -> None:
    assert parse_bytes("16GiB") == 16 * 2**30
    assert parse_bytes("256 MiB") == 256 * 2**20
    assert parse_bytes("1.5GB") == 1_500_000_000
    assert parse_bytes("4096") == 4096
    with pytest.raises(ValueError):
        parse_bytes("lots")


def build_tiny_cnn(scale: object) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 1000),
    )  # fmt: skip


TINY_SPEC = ModelSpec("tiny_cnn", "vision", build_tiny_cnn, min_image_size=8)


def test_resident_bytes_count_weights_adam_and_inputs() -> None:
    resident = bench.fit.resident_bytes(TINY_SPEC, TINY, "train")
    weights = sum(p.numel() * 4 for p in build_tiny_cnn(TINY).parameters())
    assert resident.weight_bytes == weights and resident.optimizer_bytes == 2 * weights
    side = TINY_SPEC.image_size(TINY)
    assert resident.input_bytes_per_sample == 3 * side * side * 4 + 8  # image + int64 target
    assert bench.fit.resident_bytes(TINY_SPEC, TINY, "infer").optimizer_bytes == 0


def test_measured_eager_fit_on_cpu_runs_the_step(tmp_path: Path) -> None:
    settings = BenchSettings(device=torch.device("cpu"), backends=("eager",), measured_scale=TINY)
    fit = fit_model(TINY_SPEC, "train", FitSettings(settings, cap=2**20, kind="measured",
                                                    probes=(1, 2), max_tries=4))  # fmt: skip
    result = fit.fits["eager"]
    assert result.largest is not None and result.largest >= 1
    assert all(value > fit.resident.at(batch) for batch, value in result.tried)
    paths = bench.fit.write_fit_outputs([fit], str(tmp_path), ["command: test"], 2**20)
    assert "eager largest batch" in Path(paths[0]).read_text()


def test_planned_fit_end_to_end_on_a_tiny_model(tmp_path: Path) -> None:
    settings = BenchSettings(
        device=torch.device("cpu"),
        backends=("inductor", "modelopt"),
        planned_scale=TINY,
        # one candidate setting: the search's logic is what is tested, not the settings'
        modelopt_options={"time_limit": 1.0, "settings": "default", **bench.fit.NOTHING_RUNS},
    )
    cap = 4 * 2**20
    fit = fit_model(TINY_SPEC, "train", FitSettings(settings, cap, probes=(1, 2), max_tries=3))
    for backend in ("inductor", "modelopt"):
        result = fit.fits[backend]
        assert result.largest is not None and result.largest >= 1, result
        assert result.largest_total <= cap
    # the two backends' searches share one planned row per batch
    assert len({row.batch for row in fit.rows}) == len(fit.rows)
    assert all(row.kind == "planned" and not row.error for row in fit.rows)
    paths = bench.fit.write_fit_outputs([fit], str(tmp_path), ["command: test"], cap)
    assert any(path.endswith("results.md") for path in paths)


def report(kind: str, profile: list[int] | None, emitted: int) -> GraphReport:
    boundary = None if profile is None else BackwardBoundary(profile, {})
    return GraphReport(kind, 3, 0, 0, 0, "heuristic", "heuristic", 0.0,
                       internals=GraphInternals(boundary=boundary),
                       emitted_peak_bytes=emitted)  # fmt: skip


def test_the_profile_plot_draws_both_backwards_from_the_reports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ours = [report("forward", None, 5 * 2**20), report("backward", [3 * 2**20, 2**20], 2**20)]
    theirs = [report("forward", None, 6 * 2**20), report("backward", [4 * 2**20, 0], 2**20)]
    assert bench.fit.backward_profile(ours) == [(0, 3 * 2**20), (1, 2**20)]
    assert bench.fit.backward_profile(ours[:1]) == []
    assert bench.fit.forward_peak(theirs) == 6 * 2**20
    fit = bench.fit.ModelFit(
        TINY_SPEC, "train", "planned", "none", "8px", bench.fit.Resident(0, 0, 0)
    )
    fit.reports = {4: ours}
    fit.inductor_reports = {4: theirs}
    settings = BenchSettings(device=torch.device("cpu"))
    path = bench.fit.plot_profile(fit, settings, str(tmp_path))
    assert path is not None and Path(path).name == "profile_tiny_cnn_train_b4.png"
    fit.mode = "infer"
    assert bench.fit.plot_profile(fit, settings, str(tmp_path)) is None


def test_a_slightly_bent_total_closes_in_few_tries() -> None:
    # ResNet-18's shape at 16 GiB: the line from 32 and 64 overshoots by a batch or so
    def total(b: int) -> int:
        return 1000 + 13 * b + b * b // 1000

    result = largest_fitting_batch(total, 16000, probes=(32, 64), max_batch=5000, exact=True)
    assert result.largest == brute_force(total, 16000, 5000) and result.exact
    assert len(result.tried) <= 6  # the probes, 1145 over, 1060, 1066, 1067
