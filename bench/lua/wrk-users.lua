-- wrk script for make bench: every request carries a different user (x-user-id rotating over
-- `users` ids) unless the mode is "anonymous", and the run ends with one JSON line on stdout.
-- Arguments (after `--`): host, users, mode ("user" or "anonymous").
local host = "checkout"
local users = 100000
local with_user = true
local counter = 0

function init(args)
  host = args[1] or host
  users = tonumber(args[2]) or users
  with_user = args[3] ~= "anonymous"
end

function request()
  counter = counter + 1
  if counter >= users then
    counter = 0
  end
  if with_user then
    return wrk.format("GET", "/", { ["Host"] = host, ["x-user-id"] = "u" .. counter })
  end
  return wrk.format("GET", "/", { ["Host"] = host })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
