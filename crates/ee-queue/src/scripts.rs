//! The Lua scripts: every change of a job's state is one of these, so it
//! is atomic. Every key a script touches starts with the queue's base
//! `ee:queue:{<name>}:` (passed as `ARGV[1]`; `KEYS[1]` is the queue's
//! `meta` key, which routes the call on a Cluster), so they all share the
//! queue's hash slot.
//!
//! Keys under the base: `id` (counter), `pc` (priority counter), `job:<id>`
//! (hash), `wait` (list, LPUSH in, RPOP out), `prio` (zset, score
//! priority·2³² + arrival), `delayed` (zset, due ms), `active` (zset,
//! lease deadline ms), `completed` / `failed` (zsets, finish ms), `meta`
//! (hash: `paused`), `limiter` (counter with a TTL), `marker` (zset a
//! blocked worker waits on), `events` (stream, capped).
//!
//! Time is Redis' (`TIME`), so hosts with skewed clocks agree on delays,
//! leases and retention (plus the queue's `clock` shift, which only
//! `Queue::advance_clock` sets, for tests).

use std::sync::LazyLock;

use ee_core::Script;

/// Shared Lua: `now` in ms, event emission, pushing a ready job.
const PRELUDE: &str = r"
local base = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- `Queue::advance_clock` (tests): the queue's clock runs ahead of Redis'.
local shift = redis.call('HGET', base .. 'meta', 'clock')
if shift then now = now + tonumber(shift) end
-- Events: the same plain event of several jobs in a row (`note`) goes into
-- one stream entry, `event <e> id <a> id <b> …`, written when another event
-- comes or the script ends; `Queue::events` gives one event per id. Order
-- is kept.
local pend_event, pend_max, pend = nil, 0, {}
local function flush()
  for i = 1, #pend, 1000 do
    local args = {'event', pend_event}
    for j = i, math.min(i + 999, #pend) do
      args[#args + 1] = 'id'
      args[#args + 1] = pend[j]
    end
    redis.call('XADD', base .. 'events', 'MAXLEN', '~', pend_max, '*', unpack(args))
  end
  pend = {}
end
local function emit(maxlen, ...)
  if maxlen > 0 then
    flush()
    redis.call('XADD', base .. 'events', 'MAXLEN', '~', maxlen, '*', ...)
  end
end
local function note(maxlen, event, id)
  if maxlen > 0 then
    if pend_event ~= event then
      flush()
      pend_event = event
      pend_max = maxlen
    end
    pend[#pend + 1] = id
  end
end
local function ready(id, pri)
  if pri > 0 then
    local n = redis.call('INCR', base .. 'pc') % 4294967296
    redis.call('ZADD', base .. 'prio', pri * 4294967296 + n, id)
  else
    redis.call('LPUSH', base .. 'wait', id)
  end
end
-- `cmd key values…` in calls of at most 1 000 values (Lua's unpack limit).
local function in_chunks(cmd, key, values)
  for i = 1, #values, 1000 do
    redis.call(cmd, key, unpack(values, i, math.min(i + 999, #values)))
  end
end
local function wake()
  redis.call('ZADD', base .. 'marker', 0, '0')
end
-- A child that failed for good fails its parent (still waiting for it).
local function child_failed(ev, par, id, reason)
  if redis.call('ZREM', base .. 'wchild', par) == 1 then
    local pk = base .. 'job:' .. par
    local why = 'child ' .. id .. ' failed: ' .. reason
    redis.call('HSET', pk, 'fon', now, 'err', why)
    redis.call('ZADD', base .. 'failed', now, par)
    emit(ev, 'event', 'failed', 'id', par, 'reason', why, 'retry', 0)
  end
end
local function trim(set, spec)
  local c, a = string.match(spec or '', '^(%-?%d+):(%-?%d+)$')
  c = tonumber(c)
  a = tonumber(a)
  local key = base .. set
  local old = {}
  if a and a >= 0 then
    old = redis.call('ZRANGEBYSCORE', key, '-inf', now - a, 'LIMIT', 0, 1000)
  end
  if c and c >= 0 and #old == 0 then
    local n = redis.call('ZCARD', key)
    if n > c then
      old = redis.call('ZRANGE', key, 0, math.min(n - c, 1000) - 1)
    end
  end
  for _, id in ipairs(old) do
    redis.call('DEL', base .. 'job:' .. id)
  end
  if #old > 0 then
    redis.call('ZREM', key, unpack(old))
  end
end
";

fn script(body: &str) -> Script {
    // The body runs as a function so that pending events are written
    // whichever way it returns.
    Script::new(&format!(
        "{PRELUDE}\nlocal function main()\n{body}\nend\nlocal out = main()\nflush()\nreturn out"
    ))
}

/// Adds jobs. ARGV: base, events maxlen, n, then per job: custom id (or
/// ''), name, data, options JSON (or ''), priority, delay ms (or `@<due ms>`), traceparent
/// (or ''), keep completed and keep failed (or '' for the queue's, which
/// FINISH is given), the position in this call of its parent (or ''), how
/// many children it waits for. Returns id, 1 if new / 0 if it existed, per job.
pub(crate) static ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ev = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local W = 11
local auto = 0
for i = 0, n - 1 do
  if ARGV[4 + i * W] == '' then auto = auto + 1 end
end
local nextid = 0
if auto > 0 then nextid = redis.call('INCRBY', base .. 'id', auto) - auto end
local out = {}
local woke = false
for i = 0, n - 1 do
  local o = 4 + i * W
  local id = ARGV[o]
  local key
  local fresh = 1
  if id == '' then
    nextid = nextid + 1
    id = tostring(nextid)
    key = base .. 'job:' .. id
  else
    key = base .. 'job:' .. id
    if redis.call('EXISTS', key) == 1 then fresh = 0 end
  end
  -- `@<ms>`: due at that time, and not added at all once it is past (a
  -- repeat's tick that another scheduler's job already ran).
  local due = 0
  local when = ARGV[o + 5]
  if string.sub(when, 1, 1) == '@' then
    due = tonumber(string.sub(when, 2))
    if due <= now then fresh = 0 end
  elseif tonumber(when) > 0 then
    due = now + tonumber(when)
  end
  if fresh == 1 then
    local pri = tonumber(ARGV[o + 4])
    -- Only what differs from the defaults is stored: a job with default
    -- options is three fields.
    local fields = {'name', ARGV[o + 1], 'data', ARGV[o + 2], 'ts', now}
    if ARGV[o + 3] ~= '' then fields[#fields + 1] = 'opts'; fields[#fields + 1] = ARGV[o + 3] end
    if pri > 0 then fields[#fields + 1] = 'pri'; fields[#fields + 1] = pri end
    if ARGV[o + 6] ~= '' then fields[#fields + 1] = 'tp'; fields[#fields + 1] = ARGV[o + 6] end
    if ARGV[o + 7] ~= '' then fields[#fields + 1] = 'kc'; fields[#fields + 1] = ARGV[o + 7] end
    if ARGV[o + 8] ~= '' then fields[#fields + 1] = 'kf'; fields[#fields + 1] = ARGV[o + 8] end
    -- A flow: the parent is the job at that position of this call.
    if ARGV[o + 9] ~= '' then
      fields[#fields + 1] = 'parent'
      fields[#fields + 1] = out[tonumber(ARGV[o + 9]) * 2 + 1]
    end
    local kids = tonumber(ARGV[o + 10])
    if kids > 0 then fields[#fields + 1] = 'pending'; fields[#fields + 1] = kids end
    redis.call('HSET', key, unpack(fields))
    if kids > 0 then
      redis.call('ZADD', base .. 'wchild', now, id)
      emit(ev, 'event', 'waiting-children', 'id', id, 'children', kids)
    elseif due > 0 then
      redis.call('ZADD', base .. 'delayed', due, id)
      emit(ev, 'event', 'delayed', 'id', id, 'delay', due - now)
    else
      ready(id, pri)
      woke = true
      note(ev, 'waiting', id)
    end
  end
  out[#out + 1] = id
  out[#out + 1] = fresh
end
if woke then wake() end
return out
",
    )
});

/// Takes up to n ready jobs. ARGV: base, n, lease ms, token, events
/// maxlen, rate-limit max (0: none), rate-limit window ms. Returns
/// {jobs, ms until the next delayed job is due (-1: none), ms until the
/// rate limit lets more through (0: not limited), paused (1/0), now ms}; each job
/// is {id, name, data, attempts made, created ms, traceparent, options}.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local n = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local tok = ARGV[4]
local ev = tonumber(ARGV[5])
local rlmax = tonumber(ARGV[6])
local rlms = tonumber(ARGV[7])
local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  for _, id in ipairs(due) do
    local f = redis.call('HMGET', base .. 'job:' .. id, 'ts', 'pri')
    if f[1] then
      ready(id, tonumber(f[2] or '0'))
      note(ev, 'waiting', id)
    end
  end
  redis.call('ZREM', base .. 'delayed', unpack(due))
end
if redis.call('HEXISTS', base .. 'meta', 'paused') == 1 then
  return {{}, -1, 0, 1, now}
end
if rlmax > 0 then
  local used = tonumber(redis.call('GET', base .. 'limiter') or '0')
  if used >= rlmax then
    local ttl = redis.call('PTTL', base .. 'limiter')
    if ttl < 0 then
      redis.call('DEL', base .. 'limiter')
      ttl = 0
    else
      return {{}, -1, math.max(ttl, 1), 0, now}
    end
    used = 0
  end
  if n > rlmax - used then n = rlmax - used end
end
local ids = redis.call('RPOP', base .. 'wait', n)
if not ids then ids = {} end
if #ids < n then
  local p = redis.call('ZPOPMIN', base .. 'prio', n - #ids)
  for i = 1, #p, 2 do ids[#ids + 1] = p[i] end
end
local jobs = {}
local leases = {}
local deadline = now + lease
for _, id in ipairs(ids) do
  local key = base .. 'job:' .. id
  local f = redis.call('HMGET', key, 'name', 'data', 'att', 'ts', 'tp', 'opts')
  if f[1] then
    redis.call('HSET', key, 'tok', tok, 'pon', now)
    leases[#leases + 1] = deadline
    leases[#leases + 1] = id
    jobs[#jobs + 1] = {id, f[1], f[2], f[3] or '0', f[4], f[5] or '', f[6] or ''}
    note(ev, 'active', id)
  end
end
in_chunks('ZADD', base .. 'active', leases)
if rlmax > 0 and #jobs > 0 then
  if redis.call('INCRBY', base .. 'limiter', #jobs) == #jobs then
    redis.call('PEXPIRE', base .. 'limiter', rlms)
  end
end
local nxt = -1
if #jobs == 0 then
  local d = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')
  if d[2] then nxt = math.max(tonumber(d[2]) - now, 1) end
elseif redis.call('LLEN', base .. 'wait') > 0 or redis.call('ZCARD', base .. 'prio') > 0 then
  wake()
end
return {jobs, nxt, 0, 0, now}
",
    )
});

/// Finishes jobs. ARGV: base, events maxlen, n, the queue's retention of
/// completed and of failed jobs (for jobs without their own), then per job: id, the
/// token it was taken with, kind (`c` completed, `r` retry, `f` failed for
/// good, `l` released unstarted), value (the result JSON, or the error), retry delay ms. Returns the ids
/// whose lease was lost (another worker has them, or they were removed).
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ev = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local keep_c = ARGV[4]
local keep_f = ARGV[5]
local lost = {}
local trims = {}
local woke = false
-- A child's result goes into its parent; the last one makes the parent ready.
local function child_done(par, id, value)
  local pk = base .. 'job:' .. par
  if redis.call('EXISTS', pk) == 0 then return end
  redis.call('HSET', pk, 'kid:' .. id, value)
  if redis.call('HINCRBY', pk, 'pending', -1) <= 0
      and redis.call('ZREM', base .. 'wchild', par) == 1 then
    ready(par, tonumber(redis.call('HGET', pk, 'pri') or '0'))
    woke = true
    note(ev, 'waiting', par)
  end
end
-- Set members are written once per call, not once per job.
local left_active = {}
local done = {}
local dead = {}
for i = 0, n - 1 do
  local o = 6 + i * 5
  local id = ARGV[o]
  local tok = ARGV[o + 1]
  local kind = ARGV[o + 2]
  local key = base .. 'job:' .. id
  local f = redis.call('HMGET', key, 'tok', 'kc', 'kf', 'pri', 'parent', 'att')
  f[2] = f[2] or keep_c
  f[3] = f[3] or keep_f
  if f[1] ~= tok then
    lost[#lost + 1] = id
  else
    left_active[#left_active + 1] = id
    local att = tonumber(f[6] or '0')
    if kind ~= 'l' then att = att + 1 end
    -- `tok` emptied (not deleted): one write per job.
    if kind == 'l' then
      -- Never started: back to the front of the queue, no attempt counted.
      redis.call('HSET', key, 'tok', '')
      local pri = tonumber(f[4] or '0')
      if pri > 0 then ready(id, pri) else redis.call('RPUSH', base .. 'wait', id) end
      woke = true
      emit(ev, 'event', 'waiting', 'id', id, 'released', 1)
    elseif kind == 'c' then
      if f[2] == '0:-1' then
        redis.call('DEL', key)
      else
        redis.call('HSET', key, 'att', att, 'fon', now, 'ret', ARGV[o + 3], 'tok', '')
        done[#done + 1] = now
        done[#done + 1] = id
        trims['completed|' .. (f[2] or '')] = true
      end
      note(ev, 'completed', id)
      if f[5] then child_done(f[5], id, ARGV[o + 3]) end
    elseif kind == 'r' then
      redis.call('HSET', key, 'att', att, 'err', ARGV[o + 3], 'tok', '')
      local delay = tonumber(ARGV[o + 4])
      emit(ev, 'event', 'failed', 'id', id, 'attempts', att, 'reason', ARGV[o + 3], 'retry', 1)
      if delay > 0 then
        redis.call('ZADD', base .. 'delayed', now + delay, id)
        emit(ev, 'event', 'delayed', 'id', id, 'delay', delay)
      else
        ready(id, tonumber(f[4] or '0'))
        woke = true
        note(ev, 'waiting', id)
      end
    else
      if f[3] == '0:-1' then
        redis.call('DEL', key)
      else
        redis.call('HSET', key, 'att', att, 'fon', now, 'err', ARGV[o + 3], 'tok', '')
        dead[#dead + 1] = now
        dead[#dead + 1] = id
        trims['failed|' .. (f[3] or '')] = true
      end
      emit(ev, 'event', 'failed', 'id', id, 'attempts', att, 'reason', ARGV[o + 3], 'retry', 0)
      if f[5] then child_failed(ev, f[5], id, ARGV[o + 3]) end
    end
  end
end
in_chunks('ZREM', base .. 'active', left_active)
in_chunks('ZADD', base .. 'completed', done)
in_chunks('ZADD', base .. 'failed', dead)
for k, _ in pairs(trims) do
  local set, spec = string.match(k, '^(%a+)|(.*)$')
  trim(set, spec)
end
if woke then wake() end
return lost
",
    )
});

/// Extends the leases of jobs. ARGV: base, lease ms, then id, token pairs.
/// Returns the ids whose lease was lost.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local deadline = now + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV - 1, 2 do
  local id = ARGV[i]
  if redis.call('HGET', base .. 'job:' .. id, 'tok') == ARGV[i + 1] then
    redis.call('ZADD', base .. 'active', 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
",
    )
});

/// Moves active jobs whose lease ran out back to waiting, or to failed
/// once they stalled more than allowed. ARGV: base, events maxlen, max
/// stalled. Returns {ids moved back, ids failed}.
pub(crate) static STALLED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ev = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', base .. 'active', '-inf', now, 'LIMIT', 0, 1000)
local back = {}
local failed = {}
for _, id in ipairs(ids) do
  local key = base .. 'job:' .. id
  redis.call('ZREM', base .. 'active', id)
  if redis.call('EXISTS', key) == 1 then
    redis.call('HDEL', key, 'tok')
    local stc = redis.call('HINCRBY', key, 'stc', 1)
    if stc > max then
      local reason = 'job stalled more than the allowed ' .. max .. ' times'
      redis.call('HINCRBY', key, 'att', 1)
      redis.call('HSET', key, 'fon', now, 'err', reason)
      redis.call('ZADD', base .. 'failed', now, id)
      failed[#failed + 1] = id
      emit(ev, 'event', 'failed', 'id', id, 'reason', reason, 'retry', 0)
      local par = redis.call('HGET', key, 'parent')
      if par then child_failed(ev, par, id, reason) end
    else
      local pri = tonumber(redis.call('HGET', key, 'pri') or '0')
      if pri > 0 then
        ready(id, pri)
      else
        redis.call('RPUSH', base .. 'wait', id)
      end
      back[#back + 1] = id
      note(ev, 'stalled', id)
    end
  end
end
if #back > 0 then wake() end
return {back, failed}
",
    )
});

/// Records progress of a job this token holds. ARGV: base, events maxlen,
/// token, id, progress JSON. Returns 1, or 0 when the lease was lost.
pub(crate) static PROGRESS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key = base .. 'job:' .. ARGV[4]
if redis.call('HGET', key, 'tok') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'prog', ARGV[5])
emit(tonumber(ARGV[2]), 'event', 'progress', 'id', ARGV[4], 'progress', ARGV[5])
return 1
",
    )
});

/// A job's state and fields. ARGV: base, id. Returns {state, field,
/// value, …}, or {} when there is no such job.
pub(crate) static INFO: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id = ARGV[2]
local fields = redis.call('HGETALL', base .. 'job:' .. id)
if #fields == 0 then return {} end
local state = 'waiting'
if redis.call('ZSCORE', base .. 'active', id) then state = 'active'
elseif redis.call('ZSCORE', base .. 'delayed', id) then state = 'delayed'
elseif redis.call('ZSCORE', base .. 'prio', id) then state = 'prioritized'
elseif redis.call('ZSCORE', base .. 'completed', id) then state = 'completed'
elseif redis.call('ZSCORE', base .. 'failed', id) then state = 'failed'
elseif redis.call('ZSCORE', base .. 'wchild', id) then state = 'waiting-children'
end
table.insert(fields, 1, state)
return fields
",
    )
});

/// Moves a job between states by hand. ARGV: base, events maxlen, action
/// (`retry`: failed or completed → ready, attempts reset; `promote`:
/// delayed → ready; `remove`: any state but active → gone), id. Returns
/// 'ok', 'missing', or the state that does not allow the action.
pub(crate) static MANAGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ev = tonumber(ARGV[2])
local action = ARGV[3]
local id = ARGV[4]
local key = base .. 'job:' .. id
if redis.call('EXISTS', key) == 0 then return 'missing' end
if redis.call('ZSCORE', base .. 'active', id) then return 'active' end
local pri = tonumber(redis.call('HGET', key, 'pri') or '0')
if action == 'retry' then
  local from = nil
  if redis.call('ZREM', base .. 'failed', id) == 1 then from = 'failed'
  elseif redis.call('ZREM', base .. 'completed', id) == 1 then from = 'completed' end
  if not from then return 'pending' end
  redis.call('HSET', key, 'att', 0, 'stc', 0)
  redis.call('HDEL', key, 'err', 'fon', 'ret', 'prog')
  ready(id, pri)
  wake()
  emit(ev, 'event', 'waiting', 'id', id, 'retried', from)
  return 'ok'
elseif action == 'promote' then
  if redis.call('ZREM', base .. 'delayed', id) == 0 then return 'not-delayed' end
  ready(id, pri)
  wake()
  emit(ev, 'event', 'waiting', 'id', id, 'promoted', 1)
  return 'ok'
elseif action == 'remove' then
  redis.call('LREM', base .. 'wait', 0, id)
  for _, set in ipairs({'prio', 'delayed', 'completed', 'failed', 'wchild'}) do
    redis.call('ZREM', base .. set, id)
  end
  redis.call('DEL', key)
  note(ev, 'removed', id)
  return 'ok'
end
return 'unknown action'
",
    )
});

/// Deletes up to 1 000 jobs of the queue and, once none are left, its
/// other keys. ARGV: base. Returns how many jobs it deleted (call until 0).
pub(crate) static OBLITERATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local left = 1000
local deleted = 0
local ids = redis.call('LRANGE', base .. 'wait', 0, left - 1)
for _, id in ipairs(ids) do redis.call('DEL', base .. 'job:' .. id) end
if #ids > 0 then redis.call('LTRIM', base .. 'wait', #ids, -1) end
deleted = deleted + #ids
left = left - #ids
for _, set in ipairs({'prio', 'delayed', 'active', 'completed', 'failed', 'wchild'}) do
  if left > 0 then
    local zs = redis.call('ZRANGE', base .. set, 0, left - 1)
    for _, id in ipairs(zs) do redis.call('DEL', base .. 'job:' .. id) end
    if #zs > 0 then redis.call('ZREM', base .. set, unpack(zs)) end
    deleted = deleted + #zs
    left = left - #zs
  end
end
if deleted == 0 then
  for _, k in ipairs({'id', 'pc', 'wait', 'prio', 'delayed', 'active', 'completed', 'failed',
                      'wchild', 'repeat', 'meta', 'limiter', 'marker', 'events'}) do
    redis.call('DEL', base .. k)
  end
end
return deleted
",
    )
});
