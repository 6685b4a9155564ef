/**
 * The Lua scripts of the Redis store (`redisState.ts`). Every key of one store shares the hash
 * tag `{prefix}`, so each script runs on one Redis Cluster slot; a script is given one key
 * (`KEYS[1]`, for routing) and builds the others from `ARGV[1]` (the `{prefix}:` base).
 *
 * Keys, per deployment `id` of group `g`: `d:id` (hash: n in flight, s sum of start times, cf
 * consecutive failures, circuit cs/cu/ce/cr), `l:id` (sorted set of lease ids by expiry), `L:id`
 * (hash lease id -> JSON {a: at, t: tokens, h: budget holds}), `w:id` (hash of window buckets:
 * r/t/c/f<bucket> for requests/tokens/completed/failures, R/T<second> for the rpm/tpm minute
 * windows, pruned as read); `v:g` the group's version (bumped by every change to its
 * deployments); `b:<key>/<period>@<start>` a budget's period (hash spent, held); `spend` (hash);
 * `s:<key>` policy state (hash v JSON, n version); `seq` lease ids.
 *
 * Numbers that may be fractional (dollars) travel as strings: Redis turns a Lua number reply
 * into an integer.
 *
 * @internal
 */

const prelude = `
local P = ARGV[1]
local function num(x) return tonumber(x) or 0 end
local function istr(x) return string.format('%d', x) end
local function release(holds)
  if holds == nil then return end
  for _, h in ipairs(holds) do
    if redis.call('EXISTS', h[1]) == 1 then
      local held = tonumber(redis.call('HINCRBYFLOAT', h[1], 'held', -tonumber(h[2])))
      if held < 0 then redis.call('HSET', h[1], 'held', '0') end
    end
  end
end
local function dropLease(id, lid, raw)
  local lease = cjson.decode(raw)
  redis.call('HDEL', P .. 'L:' .. id, lid)
  redis.call('ZREM', P .. 'l:' .. id, lid)
  local d = P .. 'd:' .. id
  local n = redis.call('HINCRBY', d, 'n', -1)
  if n <= 0 then redis.call('HSET', d, 'n', '0', 's', '0')
  else redis.call('HINCRBY', d, 's', istr(-lease.a)) end
  return lease
end
local function sweep(id, now)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'l:' .. id, '-inf', now)
  for _, lid in ipairs(expired) do
    local raw = redis.call('HGET', P .. 'L:' .. id, lid)
    if raw then release(dropLease(id, lid, raw).h) else redis.call('ZREM', P .. 'l:' .. id, lid) end
  end
  return #expired
end
local function windows(id, now, bucketMs, windowTtl)
  local w = P .. 'w:' .. id
  local all = redis.call('HGETALL', w)
  local out = {}
  local cur = math.floor(now / bucketMs)
  local oldest = math.floor((now - 60000) / 1000)
  for i = 1, #all, 2 do
    local f = all[i]
    local kind = string.sub(f, 1, 1)
    local at = tonumber(string.sub(f, 2))
    local keep
    if kind == 'R' or kind == 'T' then keep = at >= oldest else keep = at > cur - 6 end
    if keep then out[#out + 1] = f; out[#out + 1] = all[i + 1] else redis.call('HDEL', w, f) end
  end
  return out
end
local function row(id, now, bucketMs)
  local d = redis.call('HMGET', P .. 'd:' .. id, 'n', 's', 'cf', 'cs', 'cu', 'ce', 'cr')
  local first = redis.call('ZRANGE', P .. 'l:' .. id, 0, 0, 'WITHSCORES')
  local nextExpiry = -1
  if #first > 0 then nextExpiry = tonumber(first[2]) end
  return { num(d[1]), num(d[2]), num(d[3]), d[4] or 'closed', tostring(num(d[5])), num(d[6]), d[7] or 'failures', nextExpiry, windows(id, now, bucketMs) }
end
local function version(g) return num(redis.call('GET', P .. 'v:' .. g)) end
local function bump(g) return redis.call('INCR', P .. 'v:' .. g) end
-- reads a pool given at ARGV[i]: n, then n (id, group) pairs; sweeps it (bumping the groups of swept deployments)
local function readPool(i, now)
  local n = tonumber(ARGV[i])
  local ids, groups, seen = {}, {}, {}
  for j = 1, n do
    ids[j] = ARGV[i + 2 * j - 1]
    groups[j] = ARGV[i + 2 * j]
    if sweep(ids[j], now) > 0 then bump(groups[j]) end
  end
  return ids, groups, i + 2 * n + 1
end
local function versions(groups)
  local parts, done = {}, {}
  for _, g in ipairs(groups) do
    if not done[g] then done[g] = true; parts[#parts + 1] = g .. '=' .. version(g) end
  end
  return table.concat(parts, ',')
end
local function rows(ids, now, bucketMs)
  local out = {}
  for j, id in ipairs(ids) do out[j] = row(id, now, bucketMs) end
  return out
end
-- budgets named at ARGV[i]: n, then n full keys
local function budgets(i)
  local n = tonumber(ARGV[i])
  local out = {}
  for j = 1, n do
    local b = redis.call('HMGET', ARGV[i + j], 'spent', 'held')
    out[j] = { ARGV[i + j], b[1] or '0', b[2] or '0' }
  end
  return out, i + n + 1
end
`

/** ARGV: P, now, bucketMs, pool, budgets. Reply: versions, rows, budgets. */
export const read = `${prelude}
local now = tonumber(ARGV[2])
local bucketMs = tonumber(ARGV[3])
local ids, groups, i = readPool(4, now)
local b = budgets(i)
return { versions(groups), rows(ids, now, bucketMs), b }
`

/**
 * ARGV: P, now, bucketMs, pool, budgets to return, seen versions ('' not checked), picked index
 * (1-based), maxConcurrent, rpm, tpm (-1 none), tokens, ttlMs, the circuit seen (4), the new one
 * (4, or 'same'), charges: n then (key, limit, amount, ttlMs) each.
 * Reply: status ('ok', 'stale', 'full', 'rpm', 'tpm', 'budget', 'cooling'), lease id, versions, rows, budgets.
 */
export const take = `${prelude}
local now = tonumber(ARGV[2])
local bucketMs = tonumber(ARGV[3])
local windowTtl = math.max(bucketMs * 12, 130000)
local ids, groups, i = readPool(4, now)
local budgetArgs = i
local _, i2 = budgets(i)
i = i2
local seen = ARGV[i]
local pick = tonumber(ARGV[i + 1])
local maxConcurrent, rpm, tpm = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
local tokens, ttl = tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
local seenCircuit = { ARGV[i + 7], tonumber(ARGV[i + 8]), tonumber(ARGV[i + 9]), ARGV[i + 10] }
local newStatus = ARGV[i + 11]
local c = i + 15
local status = 'ok'
local leaseId = 0
if seen ~= '' and seen ~= versions(groups) then status = 'stale' end
local id = ids[pick]
local d = P .. 'd:' .. id
local w = P .. 'w:' .. id
local sec = math.floor(now / 1000)
local charges = tonumber(ARGV[c])
if status == 'ok' then
  local r = row(id, now, bucketMs)
  if maxConcurrent >= 0 and r[1] >= maxConcurrent then status = 'full' end
  if status == 'ok' and (rpm >= 0 or tpm >= 0) then
    local rs, ts = 0, 0
    local win = r[9]
    for k = 1, #win, 2 do
      local kind = string.sub(win[k], 1, 1)
      if kind == 'R' then rs = rs + tonumber(win[k + 1]) elseif kind == 'T' then ts = ts + tonumber(win[k + 1]) end
    end
    if rpm >= 0 and rs + 1 > rpm then status = 'rpm' elseif tpm >= 0 and ts + tokens > tpm then status = 'tpm' end
  end
  if status == 'ok' then
    for k = 0, charges - 1 do
      local key = ARGV[c + 1 + 4 * k]
      local b = redis.call('HMGET', key, 'spent', 'held')
      if num(b[1]) + num(b[2]) + tonumber(ARGV[c + 3 + 4 * k]) > tonumber(ARGV[c + 2 + 4 * k]) then status = 'budget' end
    end
  end
  if status == 'ok' and (r[4] ~= seenCircuit[1] or tonumber(r[5]) ~= seenCircuit[2] or r[6] ~= seenCircuit[3] or r[7] ~= seenCircuit[4]) then
    status = 'cooling'
  end
end
if status == 'ok' then
  leaseId = redis.call('INCR', P .. 'seq')
  local holds = {}
  for k = 0, charges - 1 do
    local key = ARGV[c + 1 + 4 * k]
    local amount = ARGV[c + 3 + 4 * k]
    redis.call('HINCRBYFLOAT', key, 'held', amount)
    if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[c + 4 + 4 * k]) end
    holds[#holds + 1] = { key, amount }
  end
  local lease = { a = now, t = tokens }
  if #holds > 0 then lease.h = holds end
  redis.call('HSET', P .. 'L:' .. id, leaseId, cjson.encode(lease))
  redis.call('ZADD', P .. 'l:' .. id, now + ttl, leaseId)
  redis.call('HINCRBY', d, 'n', 1)
  redis.call('HINCRBY', d, 's', istr(now))
  if newStatus ~= 'same' then
    redis.call('HSET', d, 'cs', newStatus, 'cu', ARGV[i + 12], 'ce', ARGV[i + 13], 'cr', ARGV[i + 14])
  end
  if rpm >= 0 then redis.call('HINCRBY', w, 'R' .. sec, 1) end
  if tpm >= 0 then redis.call('HINCRBY', w, 'T' .. sec, istr(tokens)) end
  redis.call('HINCRBY', w, 'r' .. math.floor(now / bucketMs), 1)
  redis.call('PEXPIRE', w, windowTtl)
  bump(groups[pick])
end
local b = budgets(budgetArgs)
return { status, leaseId, versions(groups), rows(ids, now, bucketMs), b }
`

/**
 * ARGV: P, now, bucketMs, id, group, lease id, outcome ('none' or 'success'/'failure'/'ignored'),
 * tokens, cost, has tpm (0/1), then the spend keys the cost is added to. Reply: version before,
 * version after, row.
 */
export const complete = `${prelude}
local now = tonumber(ARGV[2])
local bucketMs = tonumber(ARGV[3])
local id, g, lid, result = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local tokens, cost, hasTpm = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10] == '1'
local before = version(g)
if result ~= 'none' and cost > 0 then
  for j = 11, #ARGV do redis.call('HINCRBYFLOAT', P .. 'spend', ARGV[j], ARGV[9]) end
end
local changed = sweep(id, now) > 0
local raw = redis.call('HGET', P .. 'L:' .. id, lid)
local lease = nil
if raw then
  lease = dropLease(id, lid, raw)
  release(lease.h)
  if lease.h ~= nil and result ~= 'none' and cost > 0 then
    for _, h in ipairs(lease.h) do
      if redis.call('EXISTS', h[1]) == 1 then redis.call('HINCRBYFLOAT', h[1], 'spent', ARGV[9]) end
    end
  end
  changed = true
end
if result ~= 'none' then
  local w = P .. 'w:' .. id
  local d = P .. 'd:' .. id
  if lease ~= nil and hasTpm and result == 'success' and tokens > 0 then
    local f = 'T' .. math.floor(lease.a / 1000)
    local v = redis.call('HGET', w, f)
    if v then redis.call('HSET', w, f, istr(math.max(0, tonumber(v) + tokens - lease.t))) end
  end
  local b = math.floor(now / bucketMs)
  if tokens > 0 then redis.call('HINCRBY', w, 't' .. b, istr(tokens)) end
  if result ~= 'ignored' then
    redis.call('HINCRBY', w, 'c' .. b, 1)
    if result == 'success' then redis.call('HSET', d, 'cf', '0')
    else
      redis.call('HINCRBY', w, 'f' .. b, 1)
      redis.call('HINCRBY', d, 'cf', 1)
    end
  end
  redis.call('PEXPIRE', w, math.max(bucketMs * 12, 130000))
  changed = true
end
local after = before
if changed then after = bump(g) end
return { before, after, row(id, now, bucketMs) }
`

/** ARGV: P, id, lease id, expiresAt. */
export const renew = `${prelude}
redis.call('ZADD', P .. 'l:' .. ARGV[2], 'XX', ARGV[4], ARGV[3])
return 1
`

/**
 * ARGV: P, now, bucketMs, pool, seen versions, index (1-based), circuit (4), resetOutcomes (0/1).
 * Reply: status ('ok', 'stale'), versions, rows.
 */
export const setCircuit = `${prelude}
local now = tonumber(ARGV[2])
local bucketMs = tonumber(ARGV[3])
local ids, groups, i = readPool(4, now)
if ARGV[i] ~= versions(groups) then return { 'stale', versions(groups), rows(ids, now, bucketMs) } end
local k = tonumber(ARGV[i + 1])
local d = P .. 'd:' .. ids[k]
redis.call('HSET', d, 'cs', ARGV[i + 2], 'cu', ARGV[i + 3], 'ce', ARGV[i + 4], 'cr', ARGV[i + 5])
if ARGV[i + 6] == '1' then
  redis.call('HSET', d, 'cf', '0')
  local w = P .. 'w:' .. ids[k]
  local all = redis.call('HKEYS', w)
  for _, f in ipairs(all) do
    local kind = string.sub(f, 1, 1)
    if kind == 'c' or kind == 'f' then redis.call('HDEL', w, f) end
  end
end
bump(groups[k])
return { 'ok', versions(groups), rows(ids, now, bucketMs) }
`

/** ARGV: P, key, expected version, JSON. Reply: 'ok' and the new version, or 'stale', version and JSON. */
export const casState = `${prelude}
local k = P .. 's:' .. ARGV[2]
local cur = redis.call('HMGET', k, 'n', 'v')
local n = num(cur[1])
if n ~= tonumber(ARGV[3]) then return { 'stale', n, cur[2] or '' } end
redis.call('HSET', k, 'n', n + 1, 'v', ARGV[4])
return { 'ok', n + 1, '' }
`

/** ARGV: P, amount, keys... */
export const addSpend = `${prelude}
for j = 3, #ARGV do redis.call('HINCRBYFLOAT', P .. 'spend', ARGV[j], ARGV[2]) end
return 1
`
