"""The Lua scripts of the Redis checkpointer: every multi-key change runs as one script.

A script is atomic on the server, so a crash (of the client or the server, with AOF on)
never leaves half a checkpoint behind, and on Redis Cluster it is legal because every key
it touches carries the thread's hash tag (KEYS[1..4] = ids, cp, bl, w of one thread).
On a standalone server the write and delete scripts also get the thread index keys as
KEYS[5..6] and keep the index in the same atomic step; on a cluster the index lives in
another slot and the plans update it in a separate call (see base.py).

Layout (see codec.py for the Python side of the same encoding):

- a *frame* is ``<decimal length>:<bytes>``; a record or an entry is frames back to back;
- ``cp``  hash  member -> record: parent, run_id, flags, nrefs, refs..., ctype, cbytes,
  mtype, mbytes (member = ``ns \\0 checkpoint_id``, ref = ``channel \\0 version``);
- ``ids`` zset  members of ``cp``, all with score 0, so they sort by (ns, checkpoint_id);
- ``bl``  hash  ``ns \\0 channel \\0 version`` -> ``type \\0 bytes``;
- ``w``   hash  member -> framed entries, each entry = frames task_id, idx, task_path,
  channel, type, bytes.
"""

from __future__ import annotations

_COMMON = r"""
local function take(s, pos)
  local c = string.find(s, ':', pos, true)
  local len = tonumber(string.sub(s, pos, c - 1))
  return string.sub(s, c + 1, c + len), c + 1 + len
end
local function split(s)
  local out, pos, n = {}, 1, #s
  while pos <= n do
    local v
    v, pos = take(s, pos)
    out[#out + 1] = v
  end
  return out
end
local function frame(s) return #s .. ':' .. s end
local function head(rec)
  local parent, run, flags, n, pos
  parent, pos = take(rec, 1)
  run, pos = take(rec, pos)
  flags, pos = take(rec, pos)
  n, pos = take(rec, pos)
  local refs = {}
  for i = 1, tonumber(n) do
    local r
    r, pos = take(rec, pos)
    refs[i] = r
  end
  return parent, run, flags, refs
end
local function ns_of(m) return string.sub(m, 1, string.find(m, '\0', 1, true) - 1) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function index_add(ikey, ekey, ttl, tid)
  redis.call('ZADD', ikey, 0, tid)
  if ttl > 0 then redis.call('ZADD', ekey, now_ms() + ttl, tid) end
end
local function refresh(ttl)
  if ttl > 0 then for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end end
end
"""

# ARGV: ttl_ms, thread_id, cp_mode ('set' | 'nx'), w_mode ('put' | 'nx'),
#       ncp, (member, record)*, nbl, (field, value)*, nw, (member, entries)*
# 'put' writes: regular (idx >= 0) insert-if-absent, special (idx < 0) overwrite, like the
# official savers; 'nx' never overwrites (copies and backfills).
WRITE = _COMMON + r"""
local function wkey(body)
  local t, p = take(body, 1)
  local idx = take(body, p)
  return t .. '\0' .. idx, tonumber(idx)
end
local function merge_writes(m, entries, mode)
  local order, byk = {}, {}
  local cur = redis.call('HGET', KEYS[4], m)
  if cur then
    for _, body in ipairs(split(cur)) do
      local k = wkey(body)
      order[#order + 1] = k
      byk[k] = body
    end
  end
  local added, changed = 0, false
  for _, body in ipairs(split(entries)) do
    local k, idx = wkey(body)
    if byk[k] == nil then
      order[#order + 1] = k
      byk[k] = body
      added = added + 1
      changed = true
    elseif mode == 'put' and idx < 0 then
      byk[k] = body
      changed = true
    end
  end
  if changed then
    local parts = {}
    for j, k in ipairs(order) do parts[j] = frame(byk[k]) end
    redis.call('HSET', KEYS[4], m, table.concat(parts))
  end
  return added
end

local ttl = tonumber(ARGV[1])
local cp_mode, w_mode = ARGV[3], ARGV[4]
local i = 5
local cps, writes = 0, 0
local ncp = tonumber(ARGV[i]); i = i + 1
for _ = 1, ncp do
  local m, rec = ARGV[i], ARGV[i + 1]
  i = i + 2
  if cp_mode == 'set' then
    redis.call('HSET', KEYS[2], m, rec)
    redis.call('ZADD', KEYS[1], 0, m)
    cps = cps + 1
  elseif redis.call('HSETNX', KEYS[2], m, rec) == 1 then
    redis.call('ZADD', KEYS[1], 0, m)
    cps = cps + 1
  end
end
local nbl = tonumber(ARGV[i]); i = i + 1
for _ = 1, nbl do
  redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local nw = tonumber(ARGV[i]); i = i + 1
for _ = 1, nw do
  writes = writes + merge_writes(ARGV[i], ARGV[i + 1], w_mode)
  i = i + 2
end
refresh(ttl)
if ncp > 0 and #KEYS >= 6 then index_add(KEYS[5], KEYS[6], ttl, ARGV[2]) end
return {cps, writes}
"""

# ARGV: 'range', max, min, count   (newest first, ZREVRANGEBYLEX bounds)
#    or 'ids', member*
# Returns {members scanned, {member, record, writes|nil, {blob|nil per ref}}*}
READ = _COMMON + r"""
local members
if ARGV[1] == 'range' then
  members = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
else
  members = {}
  for j = 2, #ARGV do members[#members + 1] = ARGV[j] end
end
local out = {}
for _, m in ipairs(members) do
  local rec = redis.call('HGET', KEYS[2], m)
  if rec then
    local _, _, _, refs = head(rec)
    local blobs = {}
    if #refs > 0 then
      local ns, names = ns_of(m), {}
      for j, r in ipairs(refs) do names[j] = ns .. '\0' .. r end
      blobs = redis.call('HMGET', KEYS[3], unpack(names))
    end
    out[#out + 1] = {m, rec, redis.call('HGET', KEYS[4], m) or false, blobs}
  end
end
return {#members, out}
"""

# The whole thread as raw hashes, in one consistent read (copy_thread's source side).
DUMP = r"""
return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
"""

# ARGV: thread_id. KEYS[5..6] (index) only on a standalone server.
DELETE = r"""
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if #KEYS >= 6 then
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
end
return 1
"""

# ARGV: 'check' | 'latest' | 'runs', run_id*
# 'check' returns -1 when the thread uses a DeltaChannel, else 0. 'latest' refuses such a
# thread (-1), else keeps the newest checkpoint of each namespace. 'runs' deletes the
# checkpoints whose run_id is listed. Both delete the writes of what they delete, and the
# blobs no remaining checkpoint references; 'latest' clears a kept checkpoint's parent when
# that parent is deleted (as PostgresSaver.prune does). Returns the count deleted.
REMOVE = _COMMON + r"""
local mode = ARGV[1]
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local heads = {}
for _, m in ipairs(members) do
  local rec = redis.call('HGET', KEYS[2], m)
  if rec then
    local p, run, flags, refs = head(rec)
    heads[m] = {p, run, flags, refs, rec}
  end
end
if mode ~= 'runs' then
  for _, h in pairs(heads) do
    if h[3] ~= '' then return -1 end
  end
  if mode == 'check' then return 0 end
end
local doomed, n = {}, 0
if mode == 'latest' then
  for j, m in ipairs(members) do
    local nxt = members[j + 1]
    if nxt and ns_of(nxt) == ns_of(m) then doomed[m] = true end
  end
else
  local runs = {}
  for j = 2, #ARGV do runs[ARGV[j]] = true end
  for m, h in pairs(heads) do
    if h[2] ~= '' and runs[h[2]] then doomed[m] = true end
  end
end
local candidates, kept = {}, {}
for m, _ in pairs(doomed) do
  local h = heads[m]
  if h then
    local ns = ns_of(m)
    for _, r in ipairs(h[4]) do candidates[ns .. '\0' .. r] = true end
  end
  redis.call('HDEL', KEYS[2], m)
  redis.call('ZREM', KEYS[1], m)
  redis.call('HDEL', KEYS[4], m)
  n = n + 1
end
if n == 0 then return 0 end
for m, h in pairs(heads) do
  if not doomed[m] then
    local ns = ns_of(m)
    for _, r in ipairs(h[4]) do kept[ns .. '\0' .. r] = true end
    if mode == 'latest' and h[1] ~= '' and doomed[ns .. '\0' .. h[1]] then
      redis.call('HSET', KEYS[2], m, frame('') .. string.sub(h[5], #frame(h[1]) + 1))
    end
  end
end
for f, _ in pairs(candidates) do
  if not kept[f] then redis.call('HDEL', KEYS[3], f) end
end
return n
"""

# ARGV: ns, checkpoint_id ('' = latest), channel*
# Walks the parent chain from the target's parent until every channel has a stored,
# non-empty blob (its seed) or the root is reached, like InMemorySaver does.
# Returns {{checkpoint_id, writes|nil, {channel, blob}*}*}, nearest ancestor first.
HISTORY = _COMMON + r"""
local ns, cid = ARGV[1], ARGV[2]
if cid == '' then
  local latest = redis.call('ZREVRANGEBYLEX', KEYS[1], '(' .. ns .. '\1', '[' .. ns .. '\0', 'LIMIT', 0, 1)
  if #latest == 0 then return {} end
  cid = string.sub(latest[1], #ns + 2)
end
local rec = redis.call('HGET', KEYS[2], ns .. '\0' .. cid)
if not rec then return {} end
local remaining, left = {}, 0
for j = 3, #ARGV do
  if not remaining[ARGV[j]] then left = left + 1 end
  remaining[ARGV[j]] = true
end
local out = {}
local cur = head(rec)
while cur ~= '' and left > 0 do
  local m = ns .. '\0' .. cur
  local r = redis.call('HGET', KEYS[2], m)
  if not r then break end
  local parent, _, _, refs = head(r)
  local seeds = {}
  for _, ref in ipairs(refs) do
    local ch = string.sub(ref, 1, string.find(ref, '\0', 1, true) - 1)
    if remaining[ch] then
      local blob = redis.call('HGET', KEYS[3], ns .. '\0' .. ref)
      if blob and string.sub(blob, 1, 6) ~= 'empty\0' then
        seeds[#seeds + 1] = ch
        seeds[#seeds + 1] = blob
      end
    end
  end
  out[#out + 1] = {cur, redis.call('HGET', KEYS[4], m) or false, seeds}
  for j = 1, #seeds, 2 do
    remaining[seeds[j]] = nil
    left = left - 1
  end
  cur = parent
end
return out
"""

# The thread index: KEYS[1] = ids in lexicographic order, KEYS[2] = expiry time per id.
# ARGV: 'add', ttl_ms, thread_id | 'remove', thread_id* | 'expired', offset, count
#     | 'sweep', thread_id*  (drops ids whose expiry is still in the past: a thread written
#       again since its keys expired has moved its expiry forward first, so it stays).
INDEX = _COMMON + r"""
local mode = ARGV[1]
if mode == 'add' then
  index_add(KEYS[1], KEYS[2], tonumber(ARGV[2]), ARGV[3])
  return 1
elseif mode == 'remove' then
  for j = 2, #ARGV do
    redis.call('ZREM', KEYS[1], ARGV[j])
    redis.call('ZREM', KEYS[2], ARGV[j])
  end
  return 1
elseif mode == 'expired' then
  return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms(), 'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))
else
  local now, n = now_ms(), 0
  for j = 2, #ARGV do
    local s = redis.call('ZSCORE', KEYS[2], ARGV[j])
    if s and tonumber(s) <= now then
      redis.call('ZREM', KEYS[1], ARGV[j])
      redis.call('ZREM', KEYS[2], ARGV[j])
      n = n + 1
    end
  end
  return n
end
"""

SCRIPTS: dict[str, str] = {
    "write": WRITE,
    "read": READ,
    "dump": DUMP,
    "delete": DELETE,
    "remove": REMOVE,
    "history": HISTORY,
    "index": INDEX,
}
