-- wrk script for POST /api/diagnose/ (used by bench/overhead.py).
--
-- Environment:
--   BENCH_BODY   the JSON body (default: one person's twelve lab values, example/README.md)
--   BENCH_TOKEN  DRF token; when set, every request carries "Authorization: Token <token>"
--                (the realistic shape), otherwise requests are anonymous (the bare shape).
--
-- At the end it prints one line "BENCH_RESULT {json}" with the request count, errors and
-- latency percentiles in microseconds, read by bench/overhead.py.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
  or ('{"age": 47, "sex": "m", "alb": 42.2, "alp": 66.7, "alt": 23.1, "ast": 24.8, '
      .. '"bil": 6.9, "che": 8.35, "chol": 5.41, "crea": 78, "ggt": 21.4, "prot": 72.2}')
wrk.headers["Content-Type"] = "application/json"

local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Token " .. token
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "stdev": %.1f, "min": %d, "max": %d, '
      .. '"p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)
  ))
end
