-- The wrk script of the over-HTTP benchmarks (benchmarks/harness.py runs it; see README.md).
--
-- Environment, read once per Lua state:
--   BENCH_BODY_FILE   POST this file's bytes as application/json (the batch case)
--   BENCH_STOP_AFTER  stop after this many responses (the memory case; use -t1): the thread
--                     stops and writes "BENCH_STOPPED" on stderr; wrk's main thread sleeps
--                     out -d unless sent SIGINT, which the harness then does
--
-- done() prints one line, "BENCH_RESULT {json}", with the counts, the errors and the latency
-- percentiles in microseconds. wrk counts an answer with a status above 399 as a status error.

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
   local file = assert(io.open(body_file, "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   wrk.headers["Content-Type"] = "application/json"
end

local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "")
if stop_after then
   -- Defined only when asked: wrk skips parsing headers and bodies when response is nil.
   local seen = 0
   response = function(status, headers, body)
      seen = seen + 1
      if seen == stop_after then
         wrk.thread:stop()
         io.stderr:write("BENCH_STOPPED\n")
         io.stderr:flush()
      end
   end
end

done = function(summary, latency, requests)
   local errors = summary.errors
   local fields = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format(
         '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
         errors.connect, errors.read, errors.write, errors.status, errors.timeout
      ),
      string.format('"latency_mean_us":%.1f', latency.mean),
      string.format('"latency_max_us":%d', latency.max),
   }
   for _, p in ipairs({ 50, 90, 99, 99.9 }) do
      local name = string.gsub(string.format("%g", p), "%.", "")
      fields[#fields + 1] = string.format('"latency_p%s_us":%d', name, latency:percentile(p))
   end
   io.write("BENCH_RESULT {" .. table.concat(fields, ",") .. "}\n")
end
