#!/usr/bin/env python3
"""Disk taken by a million log lines in VictoriaLogs, lines shaped like the example service's.

Starts a VictoriaLogs of its own (the binary `scripts/stack.sh install` builds) on a free
loopback port with an empty data directory, sends it ``--lines`` OTLP log records over its
OTLP endpoint (what the collector sends: protobuf ``ExportLogsServiceRequest``), flushes,
and reports the data directory's size per million lines. Each record carries what the
service's records carry after the collector: a message from a small set, severity, a random
trace id and span id, a request id, a pseudonymised user id, logger and module names, and the
resource attributes of one of a few service instances.

    .venv/bin/python bench/logs_disk.py                 # 1,000,000 lines, about a minute
    .venv/bin/python bench/logs_disk.py --lines 200000
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.service import free_port  # noqa: E402

MESSAGES = [
    ("INFO", 9, "Diagnosis request received"),
    ("INFO", 9, "Diagnosis computed"),
    ("INFO", 9, "Model prediction finished"),
    ("WARN", 13, "Bad Request: /api/diagnose/"),
    ("ERROR", 17, "Internal Server Error: /api/diagnose/"),
    ("INFO", 9, "POST /api/diagnose/ 200"),
]


def text(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def batch(rng: random.Random, size: int, now_ns: int, instance: int) -> bytes:
    records = []
    for i in range(size):
        severity, number, message = rng.choice(MESSAGES)
        records.append(LogRecord(
            time_unix_nano=now_ns + i * 1000, observed_time_unix_nano=now_ns + i * 1000,
            severity_text=severity, severity_number=number, body=AnyValue(string_value=message),
            trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
            attributes=[text("request_id", rng.randbytes(16).hex()), text("user_id", rng.randbytes(16).hex()),
                        text("logger", "diagnosis.views"), text("module", "views"), text("endpoint", "hcv_diagnosis"),
                        text("code.function.name", "post"), KeyValue(key="code.line.number",
                                                                     value=AnyValue(int_value=52))],
        ))  # fmt: skip
    resource = Resource(attributes=[text("service.name", "hcv-service"), text("service.namespace", "hcv"),
                                    text("deployment.environment.name", "production"),
                                    text("service.instance.id", f"instance-{instance}"),
                                    text("host.name", f"host-{instance}"), text("telemetry.sdk.language", "python"),
                                    text("telemetry.sdk.version", "1.39.0")])  # fmt: skip
    scope = ScopeLogs(scope=InstrumentationScope(name="otel_hcv.logging"), log_records=records)
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(resource=resource, scope_logs=[scope])])
    return request.SerializeToString()


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    binary = subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), "bin", "victorialogs"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    if not os.access(binary, os.X_OK):
        sys.exit("VictoriaLogs is not built: bash scripts/stack.sh install")
    data = Path(tempfile.mkdtemp(prefix="otel-hcv-logs-disk-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={data}",
                             "-loggerLevel=WARN"])  # fmt: skip
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        rng = random.Random(19)
        now_ns = time.time_ns() - 3_600_000_000_000
        sent, t0 = 0, time.monotonic()
        while sent < args.lines:
            size = min(args.batch, args.lines - sent)
            request = urllib.request.Request(
                f"{url}/insert/opentelemetry/v1/logs", data=batch(rng, size, now_ns + sent * 1000, sent // 50000 % 4),
                headers={"Content-Type": "application/x-protobuf",
                         "VL-Stream-Fields": "service.name,service.namespace,deployment.environment.name"},
            )  # fmt: skip
            urllib.request.urlopen(request, timeout=60).read()
            sent += size
        seconds = time.monotonic() - t0
        urllib.request.urlopen(f"{url}/internal/force_flush", timeout=60).read()
        time.sleep(2)
        query = urllib.request.Request(f"{url}/select/logsql/query", data=b"query=* | stats count() as n")
        stored = urllib.request.urlopen(query, timeout=60).read().decode().strip()
        urllib.request.urlopen(f"{url}/internal/force_merge", timeout=300).read()
        time.sleep(5)
        size = dir_bytes(data)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        after_stop = dir_bytes(data)
        shutil.rmtree(data, ignore_errors=True)
    per_million = size / args.lines * 1_000_000
    print(f"{args.lines} lines sent in {seconds:.1f}s ({args.lines / seconds:.0f} lines/s over OTLP); stored {stored}")
    print(f"data directory: {size / 1e6:.1f} MB after a merge ({after_stop / 1e6:.1f} MB after stop): "
          f"{per_million / 1e6:.1f} MB per million lines, {size / args.lines:.1f} bytes per line")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
