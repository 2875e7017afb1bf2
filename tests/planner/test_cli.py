from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dynamo_modelopt.planner import Plan, Problem, check_plan
from dynamo_modelopt.planner.__main__ import main

from .helpers import branchy, small_unaligned

ROOT = Path(__file__).resolve().parents[2]


def test_problem_and_plan_json_round_trip(tmp_path):
    p = branchy()
    path = tmp_path / "p.json"
    p.to_json(path)
    assert Problem.from_json(path) == p
    assert Problem.from_json(p.to_json()) == p


def test_cli_summary_and_plan_file(tmp_path, capsys):
    p = branchy()
    inst = tmp_path / "branchy.json"
    p.to_json(inst)
    out = tmp_path / "plan.json"
    assert main([str(inst), "--solver", "cpsat", "--time-limit", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "planned peak" in text and "optimal" in text
    result = Plan.from_dict(json.loads(out.read_text()))
    check_plan(p, result)
    assert result.peak_bytes == 120


def test_cli_as_module_json(tmp_path):
    inst = tmp_path / "b.json"
    branchy().to_json(inst)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynamo_modelopt.planner",
            str(inst),
            "--json",
            "--solver",
            "heuristic",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["given_peak"] == 210
    assert summary["planned_peak"] == 120
    assert summary["status"] in ("heuristic", "optimal")


def _bench(tmp_path, *extra: str) -> str:
    inst = tmp_path / "instances"
    inst.mkdir(exist_ok=True)
    branchy().to_json(inst / "branchy.json")
    small_unaligned().to_json(inst / "small_unaligned.json")
    out = tmp_path / "results.md"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/planner/run.py"),
            "--instances",
            str(inst),
            "--out",
            str(out),
            "--time-limit",
            "5",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return out.read_text()


def _arena_column(text: str, name: str) -> str:
    row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    return row.split(" | ")[11]


def test_bench_script_runs(tmp_path):
    text = _bench(tmp_path)
    assert "| branchy |" in text and "machine:" in text
    assert _arena_column(text, "small_unaligned") == "yes"
    assert "arena = live placed peak: 2/2" in text
    # raw sizes: 3 scalars and a 100-byte buffer need 260 B over a raw live peak of 112 B
    text = _bench(tmp_path, "--off", "pad_sizes")
    assert _arena_column(text, "small_unaligned") == "no (+148 B)"


def test_plan_mode_flag_and_its_old_name() -> None:
    import argparse

    from dynamo_modelopt.planner.__main__ import add_options_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_options_arguments(parser)
    for flag in ("--plan-mode", "--mode"):
        options = options_from_args(parser.parse_args([flag, "joint"]))
        assert options.plan_mode == "joint"
    assert options_from_args(parser.parse_args([])).plan_mode == "two_stage"
