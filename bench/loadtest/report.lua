-- wrk reporting script for loadtest/run.sh: one machine-readable line after the run, with
-- exact percentiles from wrk's own latency histogram (microseconds) and every error count, so
-- a run whose responses were not 2xx (a rejected cookie answers fast) cannot pass unnoticed.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LOAD_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
