-- wrk script for `make bench`: POST /v1/leads with a distinct person per request (so every one is a new
-- lead, not a repeat), the API key from $LB_API_KEY. done() prints one machine-readable summary line.
local threads = {}
local counter = 0
local prefix = ""

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  prefix = string.format("%d%08x", tid, math.random(0, 0x7fffffff))
end

local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = os.getenv("LB_API_KEY") or ""}
local template = '{"email":"vp-%s@company-%s.example","company":"Company %s","job_title":"VP Sales",' ..
  '"company_size":500,"industry":"software","country":"DE","language":"en","channel":"paid",' ..
  '"campaign":"bench-%d","form_type":"demo_request","consent":true}'

function request()
  counter = counter + 1
  local tag = prefix .. "x" .. counter
  return wrk.format("POST", "/v1/leads", headers, string.format(template, tag, tag, tag, counter % 5))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK {\"requests\": %d, \"seconds\": %.3f, \"non_2xx\": %d, \"socket_errors\": %d, " ..
    "\"p50_ms\": %.2f, \"p99_ms\": %.2f}\n",
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
