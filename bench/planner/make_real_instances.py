"""Save planning problems of real models' graphs as bench instances.

    python bench/planner/make_real_instances.py [--models mlp,gpt2,...] [--modes train,infer]
        [--batch 1] [--timeout 900] [--max-mib 8] [--out bench/planner/instances]

Each (model, mode) is compiled in its own subprocess with the modelopt backend and its option
`save_problems=<tmpdir>` (settings="default": one candidate; time_limit=2: only the problem
matters). Full-size graphs are made without computing anything by `bench.planned`
(`compile_on_fake_tensors`: the model and inputs live under FakeTensorMode). If that fails, the
model is compiled for real at the reduced scale (bench.models.REDUCED) and labelled so.
Training runs save the forward and the backward graph, inference runs the inference graph.
Every saved problem is copied to `<out>/<model>_<mode>_<graphname>.json`, renamed so, with
model, mode, batch, input shape, scale and how it was made in its `meta`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (model, mode) pairs made by default, in the order they are made.
DEFAULT_RUNS = [
    ("mlp", "train"),
    ("mlp", "infer"),
    ("gpt2", "train"),
    ("gpt2", "infer"),
    ("resnet18", "train"),
    ("resnet18", "infer"),
    ("densenet121", "infer"),
    ("vit_b_16", "train"),
    ("vit_b_16", "infer"),
    ("bert-base", "train"),
    ("bert-base", "infer"),
    ("gpt2-xl", "infer"),
    ("gpt2-xl", "train"),
]

OPTIONS = {"settings": "default", "time_limit": 2.0}


def extra_specs() -> dict:
    """Models the bench zoo lacks: an MLP, DenseNet-121 and GPT-2-XL."""
    import torch.nn as nn

    from bench.models import ModelSpec, _torchvision

    def mlp(scale):
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * 32 * 32, 2048),
            nn.ReLU(),
            nn.Linear(2048, 2048),
            nn.ReLU(),
            nn.Linear(2048, 1024),
            nn.ReLU(),
            nn.Linear(1024, 1000),
        )

    def gpt2_xl(scale):
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(n_layer=48, n_embd=1600, n_head=25)
        if scale.text_layers:
            config.n_layer = scale.text_layers
        model = GPT2LMHeadModel(config)
        model.loss_type = "ForCausalLM"
        return model

    return {
        "mlp": ModelSpec("mlp", "vision", mlp, native_image_size=32, min_image_size=32),
        "densenet121": ModelSpec("densenet121", "vision", _torchvision("densenet121")),
        "gpt2-xl": ModelSpec("gpt2-xl", "text", gpt2_xl, vocab_size=50257),
    }


def spec_for(name: str):
    from bench.models import ZOO

    specs = {**ZOO, **extra_specs()}
    return specs[name]


def shape_of(spec, scale, mode: str, batch: int) -> str:
    if spec.family == "vision":
        side = spec.image_size(scale)
        return f"images {batch}x3x{side}x{side}"
    return f"tokens {batch}x{spec.seq_len(scale)}" + (
        f", {scale.text_layers} layers" if scale.text_layers else ""
    )


def worker(model: str, mode: str, batch: int, save_dir: str, real: bool) -> int:
    """Compile one step of (model, mode), saving its problems to save_dir; prints a JSON line."""
    import torch

    from bench.models import FULL, REDUCED, make_inputs, wrap_for_mode
    from bench.planned import plan_on_fake_tensors

    spec = spec_for(model)
    options = {**OPTIONS, "save_problems": save_dir}
    begin = time.perf_counter()
    if not real:
        result = plan_on_fake_tensors(spec, mode, batch, options, FULL)
        info = {
            "how": "fake tensors, full size",
            "scale": "full",
            "shape": shape_of(spec, FULL, mode, batch),
            "error": result.error,
            "graphs": len(result.reports),
            "seconds": time.perf_counter() - begin,
        }
    else:
        import dynamo_modelopt  # noqa: F401  (registers the backend)
        from bench.measure import no_compile_caches

        scale = replace(REDUCED, name="reduced")
        torch.manual_seed(0)
        module = wrap_for_mode(spec, spec.build(scale), mode)
        inputs = make_inputs(spec, scale, mode, batch)
        error = None
        try:
            with no_compile_caches():
                compiled = torch.compile(module, backend="modelopt", options=options)
                if mode == "train":
                    compiled(*inputs).backward()
                else:
                    with torch.no_grad():
                        compiled(*inputs)
        except Exception as exc:
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        info = {
            "how": "real compile, reduced size",
            "scale": "reduced",
            "shape": shape_of(spec, scale, mode, batch),
            "error": error,
            "graphs": None,
            "seconds": time.perf_counter() - begin,
        }
    print("RESULT " + json.dumps(info), flush=True)
    return 0


def run_one(model: str, mode: str, batch: int, real: bool, timeout: float) -> tuple[dict, Path]:
    save_dir = Path(tempfile.mkdtemp(prefix=f"mo_{model}_{mode}_"))
    cmd = [
        sys.executable, __file__, "--worker", model, mode, str(batch), str(save_dir),
        "1" if real else "0",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}, save_dir
    info = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            info = json.loads(line[len("RESULT ") :])
    if info is None:
        tail = " ".join(proc.stderr.split())[-400:]
        info = {"error": f"worker exited {proc.returncode}: {tail}"}
    return info, save_dir


def copy_problems(
    model: str, mode: str, batch: int, info: dict, save_dir: Path, out: Path, max_mib: float
) -> list[str]:
    lines = []
    for src in sorted(save_dir.glob("*.problem.json")):
        graph = src.name[: -len(".problem.json")]
        data = json.loads(src.read_text())
        name = f"{model}_{mode}_{graph}"
        data["name"] = name
        data.setdefault("meta", {}).update(
            {
                "model": model,
                "mode": mode,
                "batch": batch,
                "shape": info.get("shape"),
                "scale": info.get("scale"),
                "made_by": info.get("how"),
                "graph": graph,
                "source": "bench/planner/make_real_instances.py",
            }
        )
        text = json.dumps(data, separators=(",", ":"))
        mib = len(text) / 2**20
        n_ops, n_tensors = len(data["operations"]), len(data["tensors"])
        if mib > max_mib:
            lines.append(f"  SKIPPED {name}: {mib:.1f} MiB > {max_mib} MiB")
            continue
        (out / f"{name}.json").write_text(text)
        lines.append(f"  {name}.json: {n_ops} ops, {n_tensors} tensors, {mib:.2f} MiB")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        model, mode, batch, save_dir, real = argv[1:6]
        return worker(model, mode, int(batch), save_dir, real == "1")
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="", help="comma list; default: all of DEFAULT_RUNS")
    ap.add_argument("--modes", default="train,infer")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, mode)")
    ap.add_argument("--max-mib", type=float, default=8.0, help="skip larger instances")
    ap.add_argument("--no-fallback", action="store_true", help="no reduced real compile")
    ap.add_argument("--out", type=Path, default=HERE / "instances")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    modes = args.modes.split(",")
    runs = [(m, mode) for m, mode in DEFAULT_RUNS if (not models or m in models) and mode in modes]
    for m in models:  # models named but not in the default list
        runs += [(m, mode) for mode in modes if (m, mode) not in runs]
    args.out.mkdir(parents=True, exist_ok=True)
    for model, mode in runs:
        # Full size on fake tensors first; a real compile at reduced size if that fails.
        attempts = [(False, "fake full-size")]
        if not args.no_fallback:
            attempts.append((True, "real reduced"))
        for reduced, label in attempts:
            info, save_dir = run_one(model, mode, args.batch, reduced, args.timeout)
            saved = list(save_dir.glob("*.problem.json"))
            print(
                f"{model} {mode}: {label}: {len(saved)} problem(s), "
                f"{info.get('seconds', 0) or 0:.0f} s, error: {info.get('error')}",
                flush=True,
            )
            if saved and not info.get("error"):
                break
        for line in copy_problems(model, mode, args.batch, info, save_dir, args.out, args.max_mib):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
