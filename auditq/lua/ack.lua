-- auditq ack: the worker is done with these entries (the commit that stored them, or their
-- dead letter, came first): ack them in the consumer group and remove them from the stream,
-- atomically, so the stream's length stays the number of events not yet stored.
--
-- KEYS[1]  the stream                       (<prefix>:events)
-- ARGV[1]  the consumer group
-- ARGV[2..] the entry ids
--
-- Returns how many of them were pending (XACK's count).
--
-- Removing them one by one (XDEL) costs Redis more than acking them. But every entry older
-- than the oldest one still pending was delivered and acked: the group delivers in order,
-- and an entry leaves the pending list only by its ack (deleting a consumer would drop its
-- pending entries too, so worker/reclaim.py deletes only consumers that hold none). So the stream is trimmed up to that
-- entry (XTRIM MINID, which frees whole nodes), and only entries newer than it (acked while
-- another worker's older batch is still being stored) are deleted by id. With nothing
-- pending, everything up to the last entry delivered is done; entries not yet delivered are
-- newer than that, and never touched.

local stream, group = KEYS[1], ARGV[1]
local CHUNK = 1000 -- ids per command: unpack() is bounded by Lua's stack

-- call(...) on the ids, CHUNK at a time; the sum of its replies.
local function each_chunk(call)
  local count = 0
  for i = 2, #ARGV, CHUNK do
    count = count + call(unpack(ARGV, i, math.min(i + CHUNK - 1, #ARGV)))
  end
  return count
end

local function last_delivered()
  for _, info in ipairs(redis.call("XINFO", "GROUPS", stream)) do
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    if fields["name"] == group then return fields["last-delivered-id"] end
  end
end

local acked = each_chunk(function(...) return redis.call("XACK", stream, group, ...) end)
if acked == 0 then
  return 0 -- none was pending (acked before, or the stream or group is gone): nothing to do
end
local pending = redis.call("XPENDING", stream, group)
local removed
if pending[1] > 0 then
  removed = redis.call("XTRIM", stream, "MINID", pending[2])
else
  local last = last_delivered()
  removed = redis.call("XTRIM", stream, "MINID", last) + redis.call("XDEL", stream, last)
end
-- Fewer removed than acked: some of these are newer than an entry still pending.
if removed < acked then
  each_chunk(function(...) return redis.call("XDEL", stream, ...) end)
end
return acked
