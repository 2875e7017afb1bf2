#!/bin/sh
# Turn each technique off in turn: bench/planner/results_ablation_<switch>.md
set -e
cd "$(dirname "$0")/../.."
for sw in use_windows use_decomposition prune_pairs scale_sizes symmetry_breaking warm_start \
    exact_offsets local_search pad_sizes; do
    python bench/planner/run.py --time-limit "${TIME_LIMIT:-30}" --off "$sw" \
        --out "bench/planner/results_ablation_$sw.md"
done
