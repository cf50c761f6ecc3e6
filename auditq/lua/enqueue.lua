-- auditq enqueue: check the stream's length bound and add events, atomically.
-- Every producer, in any language, enqueues through this script, so backpressure is the
-- same everywhere. Never trim the stream with MAXLEN: that deletes unread audit events.
--
-- KEYS[1]  the stream                       (<prefix>:events)
-- KEYS[2]  running totals hash              (<prefix>:counters)
-- KEYS[3]  this minute's counters hash      (<prefix>:stats:<floor(unix_seconds / 60)>)
-- ARGV[1]  the bound (AUDITQ_MAX_QUEUE)
-- ARGV[2]  when full: "drop" (count the drop) or "reject" (the caller blocks or writes direct)
-- ARGV[3]  seconds to keep the minute hash
-- ARGV[4..] pairs of: category ("normal" | "critical"), event JSON
--
-- Returns one element per event: the new entry id, or 0 where the stream was full.
-- A critical event is always added: it is never dropped, even past the bound.

local max_len = tonumber(ARGV[1])
local drop = ARGV[2] == "drop"
local ttl = tonumber(ARGV[3])
local length = redis.call("XLEN", KEYS[1])
local results = {}
local added, critical, dropped = 0, 0, 0

for i = 4, #ARGV, 2 do
  local category = ARGV[i]
  if length < max_len or category == "critical" then
    results[#results + 1] = redis.call("XADD", KEYS[1], "*", "event", ARGV[i + 1])
    length = length + 1
    added = added + 1
    if category == "critical" then critical = critical + 1 end
  else
    results[#results + 1] = 0
    if drop then dropped = dropped + 1 end
  end
end

local function count(field, n)
  if n > 0 then
    redis.call("HINCRBY", KEYS[2], field, n)
    redis.call("HINCRBY", KEYS[3], field, n)
  end
end
count("enqueued", added)
count("enqueued_critical", critical)
count("dropped_queue_full", dropped)
redis.call("EXPIRE", KEYS[3], ttl)
return results
