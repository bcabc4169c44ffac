"""The JSON metrics summary: running totals kept beside the instruments."""

import pytest

from otel_hcv import record_api_request, record_diagnosis
from otel_hcv.summary import Snapshot, Summary, Totals, render


def test_summary_endpoint_keeps_the_plan_fields(client, otel_capture):
    before = client.get("/metrics/").json()["diagnosis_summary"]
    record_diagnosis(0.2, True, category="0=Blood Donor")
    record_diagnosis(0.4, True, category="1=Hepatitis")
    record_diagnosis(0.6, False, error_type="RuntimeError")
    record_api_request("hcv_diagnosis", "POST", 200, 0.1)
    record_api_request("hcv_diagnosis", "POST", 500, 0.3)

    body = client.get("/metrics/").json()

    summary = body["diagnosis_summary"]
    assert summary["total"] - before["total"] == 3
    assert summary["successful"] - before["successful"] == 2
    assert set(summary) == {"total", "successful", "success_rate", "avg_duration"}
    assert body["window_seconds"] == 300
    assert body["api"]["hcv_diagnosis"]["errors"] >= 1


def test_window_subtracts_the_snapshot_older_than_the_window():
    old = Snapshot(
        taken_at=0.0,
        diagnosis=Totals(count=10, successful=9, errors=1, duration_sum=5.0),
        api={"hcv_diagnosis": Totals(count=10, successful=10, duration_sum=2.0)},
    )
    new = Snapshot(
        taken_at=400.0,
        diagnosis=Totals(count=14, successful=12, errors=2, duration_sum=7.0),
        api={"hcv_diagnosis": Totals(count=12, successful=11, errors=1, duration_sum=3.0)},
    )

    body = render(new, old, 300)

    assert body["diagnosis_summary"] == {
        "total": 4,
        "successful": 3,
        "success_rate": 0.75,
        "avg_duration": 0.5,
    }
    assert body["api"] == {"hcv_diagnosis": {"total": 2, "errors": 1, "error_rate": 0.5, "avg_duration": 0.5}}


def test_empty_window_has_no_rates():
    body = render(Snapshot(1.0), Snapshot(0.0), 300)
    assert body["diagnosis_summary"] == {
        "total": 0,
        "successful": 0,
        "success_rate": None,
        "avg_duration": None,
    }
    assert body["api"] == {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_summary_counts_only_the_window():
    clock = FakeClock()
    summary = Summary(interval_seconds=15, retention_seconds=3600, clock=clock)
    summary.add_diagnosis(1.0, True)  # at 1000: outside the window below
    summary.add_api_call("hcv_diagnosis", 200, 1.0)
    clock.now += 400
    summary.add_diagnosis(0.2, True)  # snapshot of the first ones is taken first
    summary.add_diagnosis(0.4, False)
    summary.add_api_call("hcv_diagnosis", 503, 0.3)
    summary.add_api_call("other", 400, 0.1)

    body = summary.summary(300)

    assert body["diagnosis_summary"] == pytest.approx(
        {"total": 2, "successful": 1, "success_rate": 0.5, "avg_duration": 0.3}
    )
    assert body["api"]["hcv_diagnosis"] == pytest.approx(
        {"total": 1, "errors": 1, "error_rate": 1.0, "avg_duration": 0.3}
    )
    assert body["api"]["other"] == pytest.approx({"total": 1, "errors": 0, "error_rate": 0.0, "avg_duration": 0.1})
    # A window longer than the process has lived counts everything.
    assert summary.summary(10_000)["diagnosis_summary"]["total"] == 3


def test_idle_time_does_not_stretch_the_window():
    clock = FakeClock()
    summary = Summary(interval_seconds=15, retention_seconds=3600, clock=clock)
    summary.add_diagnosis(1.0, True)
    clock.now += 3000  # no traffic; the next read takes the snapshot it missed
    assert summary.summary(300)["diagnosis_summary"]["total"] == 0
    clock.now += 10
    summary.add_diagnosis(1.0, True)
    assert summary.summary(300)["diagnosis_summary"]["total"] == 1


def test_snapshots_are_bounded():
    clock = FakeClock()
    summary = Summary(interval_seconds=15, retention_seconds=150, clock=clock)
    for _ in range(1000):
        clock.now += 16
        summary.add_diagnosis(0.1, True)
    assert len(summary.snapshots) == summary.snapshots.maxlen == 12
    assert summary.summary(60)["diagnosis_summary"]["total"] == 4


def test_endpoints_are_summarised_under_their_metric_label(client, otel_capture):
    long_name = "e" * 100
    record_api_request(None, "GET", 200, 0.1)
    record_api_request(7, "GET", 200, 0.1)
    record_api_request(long_name, "GET", 500, 0.1)

    body = client.get("/metrics/").json()  # not a 500: the labels sort as text

    # None and an over-long name are not names a label may carry: both go to the overflow value.
    assert body["api"]["_OTHER"]["total"] >= 2
    assert body["api"]["_OTHER"]["errors"] >= 1
    assert body["api"]["7"]["total"] >= 1
    assert long_name[:64] not in body["api"]
    points = [p for p in otel_capture.metric_points("hcv.api.requests") if p.attributes.get("hcv.endpoint") == "_OTHER"]
    assert sum(p.value for p in points) == 1  # the long name; a None endpoint records no endpoint label


def test_a_forked_child_starts_with_its_own_summary_and_no_setup(otel_capture):
    import os

    from otel_hcv import state, summary

    record_diagnosis(0.1, True)
    assert summary.current.summary(300)["diagnosis_summary"]["total"] >= 1
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        fresh = summary.current.summary(300)["diagnosis_summary"]["total"] == 0 and state.active() is None
        os.write(write_end, b"1" if fresh else b"0")
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert state.active() is not None  # the parent keeps its setup
