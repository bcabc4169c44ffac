"""The JSON metrics summary, computed from the SDK's aggregation."""

from otel_hcv import record_api_request, record_diagnosis
from otel_hcv.summary import Snapshot, SummaryReader, Totals, render


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


def test_reader_keeps_bounded_snapshots(otel_capture):
    reader = SummaryReader.instance
    assert reader is not None
    for _ in range(reader.store.snapshots.maxlen + 5):
        reader.collect()
    assert len(reader.store.snapshots) == reader.store.snapshots.maxlen
