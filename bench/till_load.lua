-- wrk script for bench/till_load.py: earn or burn from many simulated tills.
--
--   wrk -t2 -c16 -d20s -s bench/till_load.lua http://127.0.0.1:PORT -- KIND DATAFILE RUN_ID
--
-- KIND is `earn` or `burn`. DATAFILE (written by till_load.py) has one `key <raw till key>` or
-- `card <card number>` per line. Every request goes out under a random till's key for a random
-- member's card, with its own Idempotency-Key and receipt (RUN_ID, the thread and a counter), so
-- nothing is ever replayed or refused as a duplicate receipt. Each thread counts the statuses
-- it gets; `done` prints one line `TILL_LOAD_RESULT {json}` that till_load.py parses.

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

local kind, run_id
local keys, cards = {}, {}
local counter = 0
statuses = {}        -- globals: read from the main state by done()
first_error = nil

function init(args)
   kind, run_id = args[1], args[3]
   if kind ~= "earn" and kind ~= "burn" then
      error("usage: -- earn|burn DATAFILE RUN_ID")
   end
   for line in io.lines(args[2]) do
      local what, value = line:match("^(%a+) (%S+)$")
      if what == "key" then
         table.insert(keys, "Api-Key " .. value)
      elseif what == "card" then
         table.insert(cards, value)
      end
   end
   if #keys == 0 or #cards == 0 then
      error("no keys or no cards in " .. args[2])
   end
   math.randomseed(os.time() * 1000 + thread_id)
end

function request()
   counter = counter + 1
   local unique = string.format("%s-%d-%d", run_id, thread_id, counter)
   local card = cards[math.random(#cards)]
   local body
   if kind == "earn" then
      body = string.format(
         '{"member":{"card":"%s"},"amount":"4000.00","currency":"INR","receipt":"E%s"}',
         card, unique)
   else
      body = string.format(
         '{"member":{"card":"%s"},"points":10,"bill_amount":"600.00","receipt":"B%s"}',
         card, unique)
   end
   local headers = {
      ["Authorization"] = keys[math.random(#keys)],
      ["Idempotency-Key"] = unique,
      ["Content-Type"] = "application/json",
   }
   return wrk.format("POST", "/api/v1/" .. kind, headers, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if (status < 200 or status > 299) and first_error == nil then
      first_error = status .. " " .. string.sub(body or "", 1, 300)
   end
end

local function json_string(s)
   return '"' .. s:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
   end) .. '"'
end

function done(summary, latency, requests)
   local counts, sample = {}, nil
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses") or {}) do
         counts[status] = (counts[status] or 0) + n
      end
      sample = sample or thread:get("first_error")
   end
   local parts = {}
   for status, n in pairs(counts) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local e = summary.errors
   io.write(string.format(
      'TILL_LOAD_RESULT {"requests":%d,"duration_us":%d,"mean_us":%.1f,"p50_us":%d,'
         .. '"p90_us":%d,"p99_us":%d,"max_us":%d,"statuses":{%s},'
         .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"first_error":%s}\n',
      summary.requests, summary.duration, latency.mean, latency:percentile(50),
      latency:percentile(90), latency:percentile(99), latency.max, table.concat(parts, ","),
      e.connect, e.read, e.write, e.timeout,
      sample and json_string(sample) or "null"))
end
