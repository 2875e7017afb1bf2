"""The planned order is used only where it issues collectives and waits in Inductor's sequence."""

from __future__ import annotations

from dynamo_modelopt.inductor.collectives import moved_communication

COMMUNICATION = {"ar1", "wait1", "ar2", "wait2"}


def test_compute_may_move_around_collectives() -> None:
    inductor = ["mm", "ar1", "relu", "ar2", "wait1", "add", "wait2"]
    planned = ["mm", "relu", "ar1", "ar2", "wait1", "wait2", "add"]
    assert moved_communication(inductor, planned, COMMUNICATION) is None


def test_reordered_collectives_keep_inductors_order() -> None:
    inductor = ["mm", "ar1", "relu", "ar2", "wait1", "wait2"]
    planned = ["mm", "relu", "ar2", "ar1", "wait1", "wait2"]
    reason = moved_communication(inductor, planned, COMMUNICATION)
    assert reason is not None and "ar2" in reason and "ar1" in reason


def test_a_wait_moved_past_another_collective_keeps_inductors_order() -> None:
    inductor = ["ar1", "wait1", "ar2", "wait2"]
    planned = ["ar1", "ar2", "wait1", "wait2"]
    assert moved_communication(inductor, planned, COMMUNICATION) is not None
