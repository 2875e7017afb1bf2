"""The runner on tiny models: failure isolation, backend errors, fake-tensor planning, CLI."""

from pathlib import Path

import pytest
import torch
from torch import nn

import bench.measure
import bench.planned
import bench.run
from bench.models import TINY, ModelSpec
from bench.planned import compile_on_fake_tensors
from bench.run import BenchSettings, Task, run_benchmark


def build_tiny_cnn(scale: object) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 1000),
    )  # fmt: skip


def build_broken(scale: object) -> nn.Module:
    raise RuntimeError("cannot build this model")


TINY_SPEC = ModelSpec("tiny_cnn", "vision", build_tiny_cnn, min_image_size=8)
BROKEN_SPEC = ModelSpec("broken", "vision", build_broken)


def settings(*backends: str) -> BenchSettings:
    return BenchSettings(
        device=torch.device("cpu"), backends=backends, measured_scale=TINY, repeats=1
    )


def no_modelopt() -> None:
    raise ImportError("dynamo_modelopt is not importable here")


def test_a_failing_model_gets_an_error_row_and_the_run_goes_on() -> None:
    tasks = [Task(BROKEN_SPEC, "train", 1, "measured"), Task(TINY_SPEC, "train", 1, "measured")]
    seen: list[int] = []
    result = run_benchmark(
        tasks, settings("eager"), on_row=lambda r: seen.append(len(r.rows)), progress=False
    )
    broken, tiny = result.rows
    assert broken.model == "broken" and "cannot build this model" in broken.error
    assert broken.eager_peak_bytes is None
    assert tiny.error == ""
    assert tiny.eager_peak_bytes is not None and tiny.eager_peak_bytes > 0
    assert tiny.eager_step_ms is not None
    assert seen == [1, 2]


def test_an_unavailable_backend_is_an_error_in_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.measure, "load_modelopt", no_modelopt)
    monkeypatch.setattr(bench.planned, "load_modelopt", no_modelopt)
    tasks = [Task(TINY_SPEC, "infer", 2, "measured"), Task(TINY_SPEC, "infer", 2, "planned")]
    measured, planned = run_benchmark(tasks, settings("eager", "modelopt"), progress=False).rows
    assert measured.eager_peak_bytes is not None and measured.eager_peak_bytes > 0
    assert measured.modelopt_peak_bytes is None
    assert measured.error.startswith("modelopt: ImportError")
    assert planned.kind == "planned" and planned.error.startswith("modelopt: ImportError")


def test_inductor_row_is_measured_with_its_timeline() -> None:
    result = run_benchmark(
        [Task(TINY_SPEC, "train", 2, "measured")], settings("eager", "inductor"), progress=False
    )
    (row,) = result.rows
    assert row.error == ""
    assert row.inductor_peak_bytes is not None and row.inductor_peak_bytes > 0
    assert row.inductor_compile_seconds is not None and row.inductor_compile_seconds > 0
    timelines = result.timelines[("tiny_cnn", "train", 2)]
    assert set(timelines) == {"eager", "inductor"}
    assert max(live for _, live in timelines["inductor"]) == row.inductor_peak_bytes


def test_modelopt_row_times_a_recompile_that_reads_the_stored_choice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dynamo_modelopt.backend

    monkeypatch.setenv("MODELOPT_CACHE_DIR", str(tmp_path))
    compiled: list[str] = []
    real = dynamo_modelopt.backend.compile_trial

    def counting(candidate: object, *args: object, **kwargs: object) -> object:
        compiled.append(candidate.name)  # type: ignore[attr-defined]
        return real(candidate, *args, **kwargs)

    monkeypatch.setattr(dynamo_modelopt.backend, "compile_trial", counting)
    result = run_benchmark(
        [Task(TINY_SPEC, "train", 2, "measured")], settings("modelopt"), progress=False
    )
    (row,) = result.rows
    assert row.error == "" and row.modelopt_recompile_seconds is not None
    searched = len(compiled) - 1
    assert searched > 1  # a CNN in training has alternatives to search
    assert compiled[-1] == row.settings  # the recompile built the chosen settings alone


def test_fake_tensor_compile_computes_nothing() -> None:
    graphs: list[int] = []

    def count_graph(gm: torch.fx.GraphModule, example_inputs: object) -> None:
        graphs.append(len(gm.graph.nodes))

    # 4096 images of 224px would be 2.3 GiB of real input: fake tensors make it free.
    big = ModelSpec("tiny_cnn", "vision", build_tiny_cnn, native_image_size=224)
    seconds = compile_on_fake_tensors(big, "train", 4096, count_graph, scale=TINY)
    assert len(graphs) == 1 and seconds < 30


def test_fake_tensor_compile_lowers_the_backward_too() -> None:
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    lowered: list[int] = []

    def counting_inner(gm: torch.fx.GraphModule, example_inputs: object, **kwargs: object):
        lowered.append(len(gm.graph.nodes))
        return compile_fx_inner(gm, example_inputs, **kwargs)

    def compile_graph(gm: torch.fx.GraphModule, example_inputs: object) -> object:
        return compile_fx(gm, example_inputs, inner_compile=counting_inner)

    # A cache hit would skip inner_compile, so count on a cold compile.
    with bench.measure.no_compile_caches():
        compile_on_fake_tensors(TINY_SPEC, "train", 2, compile_graph, scale=TINY)
    assert len(lowered) == 2  # forward and backward, without running a backward


def test_quick_command_line_picks_small_models_and_tiny_shapes() -> None:
    args = bench.run.parse_args(["--quick", "--mode", "train", "--batch", "1,32"])
    tasks = bench.run.tasks_from_args(args)
    quick_settings = bench.run.settings_from_args(args)
    assert {task.spec.name for task in tasks} == set(bench.run.QUICK_MODELS)
    assert {(task.mode, task.batch) for task in tasks} == {("train", 1), ("train", 32)}
    assert quick_settings.measured_scale.name == "tiny"
    assert quick_settings.modelopt_options["time_limit"] == 2.0


def test_main_writes_tables_and_plots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bench.run, "select_models", lambda names: [TINY_SPEC, BROKEN_SPEC])
    argv = ["--backends", "eager", "--kind", "measured", "--device", "cpu", "--scale", "tiny",
            "--repeats", "1", "--out", str(tmp_path)]  # fmt: skip
    result = bench.run.main(argv)
    assert len(result.rows) == 4
    written = {path.name for path in tmp_path.iterdir()}
    assert {"results.md", "results.csv", "peak_memory_measured.png", "timeline.png"} <= written
    # and one timeline per measured row that has one
    timelines = {path.name for path in (tmp_path / "timelines").iterdir()}
    assert timelines == {"timeline_tiny_cnn_train_b1.png", "timeline_tiny_cnn_infer_b1.png"}
    markdown = (tmp_path / "results.md").read_text()
    assert "- command: `python -m bench.run --backends eager" in markdown
    assert "CPUs" in markdown and "torch " in markdown
    assert "cannot build this model" in markdown


def test_timeline_plot_picks_the_training_step_modelopt_improved_most() -> None:
    result = bench.run.BenchResult()
    flat = [(0, 100), (1, 0)]
    result.timelines = {
        ("a", "train", 1): {"inductor": flat, "modelopt": flat, "eager": flat},
        ("b", "train", 1): {"inductor": [(0, 100)], "modelopt": [(0, 60)], "eager": flat},
        ("c", "infer", 1): {"inductor": [(0, 100)], "modelopt": [(0, 10)], "eager": flat},
        ("d", "train", 1): {"eager": [(0, 5)]},
    }
    assert bench.run.pick_timeline(result, None)[0] == ("b", "train", 1)
    assert bench.run.pick_timeline(result, "d")[0] == ("d", "train", 1)
    assert bench.run.pick_timeline(result, "missing") is None


def test_apply_plan_keeps_measured_peaks_and_fills_planned_ones() -> None:
    from bench.table import Row
    from dynamo_modelopt.report import GraphReport

    graph = GraphReport(
        graph_kind="forward", num_nodes=3, inductor_peak_bytes=200, planned_peak_bytes=150,
        lower_bound_bytes=120, solver="cpsat", status="optimal", solve_seconds=0.5,
        fallback_reason=None,
    )  # fmt: skip
    measured = Row("m", "train", 1, "measured", "cpu", modelopt_peak_bytes=170)
    bench.run.apply_plan(measured, [graph], planned=False)
    assert (measured.modelopt_peak_bytes, measured.planned_peak_bytes) == (170, 150)
    assert measured.inductor_peak_bytes is None and measured.lower_bound_bytes == 120
    planned = Row("m", "train", 1, "planned", "cpu (fake tensors)")
    bench.run.apply_plan(planned, [graph], planned=True)
    assert (planned.inductor_peak_bytes, planned.modelopt_peak_bytes) == (200, 150)
    assert planned.gap == pytest.approx(0.2)


def test_step_times_zoo_rows_take_a_batch_and_default_to_modelopts_choice() -> None:
    import bench.step_times as step_times

    _, (images, targets) = step_times._build("zoo:squeezenet1_0@3")
    assert images.shape[0] == targets.shape[0] == 3
    _, (images, _) = step_times._build("zoo:squeezenet1_0")
    assert images.shape[0] == 1
    assert step_times._settings_of("zoo:squeezenet1_0@3") == ("auto",)
    assert step_times._settings_of("gpt2") == step_times.SETTINGS["gpt2"]


def test_time_paired_times_variants_in_rotating_turns_against_inductor(monkeypatch) -> None:
    import time

    import bench.step_times as step_times

    calls: list[str] = []

    def fake_compiled(row: str, settings: str, device: str = "cpu") -> object:
        def step() -> None:
            calls.append(settings)
            time.sleep(0.02 if settings == "slow" else 0.01)

        return step_times.CompiledStep(step, settings, [])

    monkeypatch.setattr(step_times, "_compiled_step", fake_compiled)
    monkeypatch.setattr(step_times, "_peak_mib", lambda step, device: 1.0)
    result = step_times.time_paired("gpt2", ["slow"], repeats=4)
    assert result["inductor"]["overhead"] == 0.0
    assert 0.5 < result["slow"]["overhead"] < 1.5  # twice Inductor's sleep
    assert result["slow"]["median_ms"] > result["inductor"]["median_ms"]
    timed = calls[2:]  # after one warm-up call each
    assert [timed[2 * r] for r in range(4)] == ["inductor", "slow", "inductor", "slow"]

    def failing(row: str, settings: str, device: str = "cpu") -> object:
        def step() -> None:
            if settings == "slow":
                raise ValueError("no kernel")

        return step_times.CompiledStep(step, settings, [])

    monkeypatch.setattr(step_times, "_compiled_step", failing)
    with pytest.raises(RuntimeError, match="slow: ValueError: no kernel"):
        step_times.time_paired("gpt2", ["slow"], repeats=2)
