"""Measure the spans per second one gateway (collector/gateway.yaml) sustains on this machine.

    .venv/bin/python -m tests.tier.bench_gateway [--seconds 60] [--connections 4]
                                                 [--rate SPANS_PER_S] [--jaeger URL]

Not a test (pytest does not collect it); the figure goes into docs/operations.md.

Method:
* one gateway, the shipped gateway.yaml unchanged except for its ports (free loopback
  ports) and the Jaeger endpoint: by default a discard endpoint in this process, so
  the figure is the gateway's and not Jaeger's (``--jaeger http://127.0.0.1:14318`` to
  export to the stack's Jaeger instead). Defaults apply: decision_wait 10 s,
  num_traces 100000, 10 % baseline sampling, memory_limiter 512 MiB;
* traffic: the tier tests' synthetic traces (5 spans each, 8 % errors, 8 % slow,
  children and roots in different requests, 100 traces per request pair), generated
  before the clock starts so the sender only does HTTP;
* closed loop (default): ``--connections`` keep-alive OTLP/HTTP clients post as fast as
  the gateway answers; open loop (``--rate``): the requests are paced to a fixed rate;
* the gateway's own metrics are read at the end of a warm-up (decision_wait + 5 s:
  the sampler's buffer fills during the first decision_wait) and at the end; the
  figures are over that window: accepted spans/s, CPU seconds per second
  (otelcol_process_cpu_seconds), RSS, traces held by the sampler, refusals, and
  traces dropped before their decision. The load is sustained when nothing is
  refused or dropped early and the sampler's buffer stays at about
  new traces/s x decision_wait.
"""

from __future__ import annotations

import argparse
import http.server
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.service import free_port
from tests.tier.helpers import GATEWAY_CONFIG, metric_sum, scrape, stack_sh, wait_healthy
from tests.tier.traffic import SPANS_PER_TRACE, OtlpHttpSender, make_traces, requests_for


class _Discard(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (cross-check of otelcol_process_cpu_seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _snapshot(url: str, pid: int) -> dict[str, float]:
    s = scrape(url)
    return {
        "proc_cpu": _proc_cpu_seconds(pid),
        "accepted": metric_sum(s, "otelcol_receiver_accepted_spans", receiver="otlp"),
        "refused": metric_sum(s, "otelcol_receiver_refused_spans", receiver="otlp"),
        "cpu": metric_sum(s, "otelcol_process_cpu_seconds"),
        "rss_mib": metric_sum(s, "otelcol_process_memory_rss") / 2**20,
        "on_memory": metric_sum(s, "otelcol_processor_tail_sampling_sampling_traces_on_memory"),
        "new_traces": metric_sum(s, "otelcol_processor_tail_sampling_new_trace_id_received"),
        "dropped_early": metric_sum(s, "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early"),
        "exported": metric_sum(s, "otelcol_exporter_sent_spans", exporter="otlp_http/jaeger"),
        "export_failed": metric_sum(s, "otelcol_exporter_send_failed_spans"),
        "queue": metric_sum(s, "otelcol_exporter_queue_size", exporter="otlp_http/jaeger"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0, help="open loop: offered spans per second")
    parser.add_argument("--jaeger", default="", help="export to this Jaeger OTLP/HTTP endpoint instead of discarding")
    parser.add_argument("--decision-wait", type=float, default=10)
    args = parser.parse_args()

    binary = stack_sh("bin", "collector").stdout.strip()
    if not os.access(binary, os.X_OK):
        print("collector not built: scripts/stack.sh install", file=sys.stderr)
        return 1

    warmup = args.decision_wait + 5
    # Enough distinct traces for the whole run at up to 60k spans/s (closed loop) or the asked rate.
    per_s = args.rate or 60000
    n_traces = int(per_s * (args.seconds + 5) / SPANS_PER_TRACE)
    print(f"generating {n_traces} traces ({n_traces * SPANS_PER_TRACE} spans) ...", flush=True)
    traces = make_traces(n_traces, random.Random(7))
    payloads = [p for p, _ in requests_for(traces, "bench-gateway", group=100)]
    spans_per_payload = n_traces * SPANS_PER_TRACE / len(payloads)
    del traces

    sink = None
    if not args.jaeger:
        sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
    jaeger = args.jaeger or f"http://127.0.0.1:{sink.server_address[1]}"

    ports = {k: free_port() for k in ("grpc", "http", "health", "prom", "telemetry")}
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OTEL_COLLECTOR_BIND": "127.0.0.1",
        "OTEL_HCV_GATEWAY_NAME": "bench",
        "OTEL_HCV_OTLP_GRPC_PORT": str(ports["grpc"]),
        "OTEL_HCV_OTLP_HTTP_PORT": str(ports["http"]),
        "OTEL_HCV_HEALTH_PORT": str(ports["health"]),
        "OTEL_HCV_PROMETHEUS_PORT": str(ports["prom"]),
        "OTEL_HCV_TELEMETRY_PORT": str(ports["telemetry"]),
        "OTEL_HCV_SAMPLING_DECISION_WAIT": f"{args.decision_wait:g}s",
        "JAEGER_OTLP_ENDPOINT": jaeger,
        "OTEL_HCV_LOG_SINK": str(tmp / "logs.jsonl"),
    }
    log = open(tmp / "gateway.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([binary, "--config", str(GATEWAY_CONFIG)], stdout=log, stderr=subprocess.STDOUT, env=env)
    telemetry = f"http://127.0.0.1:{ports['telemetry']}/metrics"
    ok = False
    try:
        if not wait_healthy(f"http://127.0.0.1:{ports['health']}/", proc):
            print((tmp / "gateway.log").read_text()[-3000:], file=sys.stderr)
            return 1
        lock = threading.Lock()
        state = {"next": 0, "stop": False, "errors": 0}
        t_start = time.monotonic()

        def worker():
            sender = OtlpHttpSender(f"http://127.0.0.1:{ports['http']}", timeout=30)
            while not state["stop"]:
                with lock:
                    i = state["next"]
                    state["next"] += 1
                if i >= len(payloads):
                    break
                if args.rate:
                    due = t_start + i * spans_per_payload / args.rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                try:
                    sender.send(payloads[i])
                except RuntimeError:
                    state["errors"] += 1
            sender.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.connections)]
        for t in threads:
            t.start()
        time.sleep(warmup)
        first, t1 = _snapshot(telemetry, proc.pid), time.monotonic()
        peak_memory = 0.0
        while time.monotonic() < t_start + args.seconds and any(t.is_alive() for t in threads):
            time.sleep(1)
            peak_memory = max(peak_memory, _snapshot(telemetry, proc.pid)["on_memory"])
        last, t2 = _snapshot(telemetry, proc.pid), time.monotonic()
        state["stop"] = True
        for t in threads:
            t.join(timeout=30)
        if state["next"] >= len(payloads):
            print("WARNING: ran out of pre-generated traffic before the end; raise --rate or lower --seconds")
        dt = t2 - t1
        spans_s = (last["accepted"] - first["accepted"]) / dt
        cpu = (last["proc_cpu"] - first["proc_cpu"]) / dt
        cpu_reported = (last["cpu"] - first["cpu"]) / dt
        traces_s = (last["new_traces"] - first["new_traces"]) / dt
        mode = f"open loop at {args.rate:.0f} spans/s" if args.rate else f"closed loop, {args.connections} connections"
        print(f"\ngateway benchmark ({mode}), window {dt:.0f} s after {warmup:.0f} s warm-up, {os.cpu_count()} CPUs")
        print(f"  accepted:          {spans_s:,.0f} spans/s ({traces_s:,.0f} new traces/s)")
        print(
            f"  gateway CPU:       {cpu:.2f} cores (/proc; otelcol_process_cpu_seconds: {cpu_reported:.2f}) -> "
            f"{spans_s / max(cpu, 1e-9):,.0f} spans per CPU-second"
        )
        print(f"  RSS:               {last['rss_mib']:.0f} MiB")
        print(
            f"  sampler buffer:    {last['on_memory']:,.0f} traces (peak {peak_memory:,.0f}; "
            f"expected ~{traces_s * args.decision_wait:,.0f} = new traces/s x decision_wait)"
        )
        print(f"  refused spans:     {last['refused'] - first['refused']:.0f}")
        print(f"  dropped too early: {last['dropped_early'] - first['dropped_early']:.0f} traces")
        print(
            f"  exported to {'Jaeger' if args.jaeger else 'discard'}: "
            f"{(last['exported'] - first['exported']) / dt:,.0f} spans/s, queue {last['queue']:.0f}, "
            f"failed {last['export_failed']:.0f}"
        )
        print(f"  sender errors:     {state['errors']}")
        ok = True
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if sink is not None:
            sink.shutdown()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"gateway log kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
