from __future__ import annotations

import pytest

from dynamo_modelopt.planner import (
    Tensor,
    fold_aliases,
    is_topological,
    live_bytes_profile,
    live_ranges,
    make_problem,
    peak_live_bytes,
)

from .helpers import branchy


def small():
    t = Tensor
    return make_problem(
        ["p", "q", "r", "s"],
        [
            t("inp", 1, None, ("q",), placed=False),
            t("a", 2, "p", ("q", "s")),
            t("view", 0, "q", ("r",), alias_of="a"),
            t("ws", 4, "r", ()),
            t("out", 8, "r", (), live_to_end=True),
            t("w", 16, None, (), resident=True, placed=False),
            t("dead_in", 32, None, ()),
        ],
    )


def test_live_ranges_follow_the_timing_model():
    p = small()
    r = live_ranges(p, ["p", "q", "r", "s"])
    assert r["inp"] == (0, 2)  # input: from step 0 through its consumer (half-open)
    assert r["a"] == (0, 4)  # root keeps the alias's uses (r) and its own (s)
    assert "view" not in r  # aliases are folded
    assert r["ws"] == (2, 3)  # workspace: its producer's step only
    assert r["out"] == (2, 4)  # live to the end
    assert r["w"] == (0, 4)  # resident
    assert r["dead_in"] == (0, 1)


def test_fold_aliases_merges_uses_and_flags():
    t = Tensor
    p = make_problem(
        ["p", "q", "r"],
        [
            t("base", 8, "p", ("q",)),
            t("v1", 0, "q", ("r",), alias_of="base"),
            t("v2", 0, None, (), alias_of="v1", live_to_end=True),
        ],
    )
    folded = fold_aliases(p)
    assert [x.name for x in folded.tensors] == ["base"]
    base = folded.tensors[0]
    assert base.size == 8
    assert set(base.consumers) == {"q", "r"}
    assert base.live_to_end


def test_profile_and_peak():
    p = small()
    order = ["p", "q", "r", "s"]
    prof = live_bytes_profile(p, order)
    # step 0: inp 1 + a 2 + w 16 + dead_in 32; step 1: inp 1, a 2, w 16
    assert prof == [51, 19, 2 + 4 + 8 + 16, 2 + 8 + 16]
    assert peak_live_bytes(p, order) == 51


def test_branchy_peaks():
    p = branchy()
    assert peak_live_bytes(p, p.op_names) == 210
    assert peak_live_bytes(p, ["a1", "a2", "b1", "b2", "join"]) == 120


def test_is_topological():
    p = branchy()
    assert is_topological(p, p.op_names)
    assert not is_topological(p, ["a2", "a1", "b1", "b2", "join"])
    assert not is_topological(p, ["a1", "b1", "a2", "b2"])
    assert not is_topological(p, ["a1", "a1", "a2", "b2", "join"])


def test_precedences_count():
    t = Tensor
    p = make_problem(["x", "y"], [t("a", 1, "x", ())], precedences=[("y", "x")])
    assert not is_topological(p, ["x", "y"])
    assert is_topological(p, ["y", "x"])


def test_invalid_problem_raises():
    with pytest.raises(ValueError):
        make_problem(["x"], [Tensor("a", 1, "nope", ())])
