"""Write the synthetic benchmark instances to bench/planner/instances/synthetic_*.json.

python bench/planner/gen_synthetic.py
"""

from __future__ import annotations

from pathlib import Path

from dynamo_modelopt.planner.synthetic import chain, diamonds, fwbw, random_dag, unet

HERE = Path(__file__).resolve().parent / "instances"


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    problems = [
        chain(200, seed=1),
        diamonds(30, 4, seed=2),
        unet(5, 16, seed=3),
        fwbw(40, seed=4),
        random_dag(120, seed=5, alignment=64, sizes=(512, 1024, 2048, 4096, 8192)),
        random_dag(400, seed=6, window=10, alignment=64, sizes=(512, 1536, 4096, 8192, 32768)),
        diamonds(60, 8, seed=7),
    ]
    for p in problems:
        if p.name.startswith("random"):
            p.name = f"synthetic_{p.name}"
        path = HERE / f"{p.name}.json"
        p.to_json(path)
        print(f"{path}: {len(p.operations)} ops, {len(p.tensors)} tensors")


if __name__ == "__main__":
    main()
