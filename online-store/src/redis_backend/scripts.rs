//! The Lua scripts the Redis backend runs: every write is one of them, atomic per key.

/// KEYS: the keys. ARGV: `1` when some entry expires, else `0`; then each key's blob; then,
/// only when the first argument is `1`, each key's expiry (Unix ms, `0` for none).
/// The write rule of docs/online-format.md, as `value_codec::should_store`: a blob replaces the
/// stored one when it orders after it (timestamps, then version, then the rest), or when the
/// stored one is damaged (a version 2 blob whose CRC-32 does not match, an unknown version).
/// Lua's string `<` depends on the locale, so bytes are compared as numbers: the ordered
/// timestamps (bytes 1..17) as four big-endian u32s, the rest byte by byte. Strings are
/// interned, so `new ~= old` is cheap, and the CRC (table built on first use) runs only for a
/// stored blob that would otherwise win.
///
/// Each `redis.call` costs Redis about a microsecond beyond its work, so the stored blobs are
/// read with one `MGET` and the winners that do not expire written with one `MSET` (a key
/// holding another type reads as absent, as it does for the feature server, and is replaced).
pub(super) const WRITE_IF_NEWER: &str = r#"
local function cmp(a, b, from, to)
  for j = from, to do
    local x, y = string.byte(a, j) or -1, string.byte(b, j) or -1
    if x ~= y then return x > y and 1 or -1 end
  end
  return 0
end
local function greater(a, b)
  local c = 0
  if #a >= 17 and #b >= 17 then
    local a1, a2, a3, a4 = struct.unpack('>I4I4I4I4', a, 2)
    local b1, b2, b3, b4 = struct.unpack('>I4I4I4I4', b, 2)
    if a1 ~= b1 then return a1 > b1 end
    if a2 ~= b2 then return a2 > b2 end
    if a3 ~= b3 then return a3 > b3 end
    if a4 ~= b4 then return a4 > b4 end
  else
    c = cmp(a, b, 2, 17)
  end
  if c == 0 then c = cmp(a, b, 1, 1) end
  if c == 0 then c = cmp(a, b, 18, math.max(#a, #b)) end
  return c > 0
end
local crc_table
local function intact(blob)
  local version, len = string.byte(blob, 1), string.len(blob)
  if version == 1 then return true end
  if version ~= 2 or len < 25 then return false end
  if not crc_table then
    crc_table = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if bit.band(c, 1) == 1 then
          c = bit.bxor(bit.rshift(c, 1), 0xEDB88320)
        else
          c = bit.rshift(c, 1)
        end
      end
      crc_table[i] = c
    end
  end
  local c = bit.bnot(0)
  for j = 1, len - 4 do
    c = bit.bxor(bit.rshift(c, 8), crc_table[bit.band(bit.bxor(c, string.byte(blob, j)), 255)])
  end
  local b1, b2, b3, b4 = string.byte(blob, len - 3, len)
  return bit.bnot(c) == bit.tobit(b1 + b2 * 256 + b3 * 65536 + b4 * 16777216)
end
local n = #KEYS
local expiring = ARGV[1] == '1'
local olds = redis.call('MGET', unpack(KEYS))
local written, plain = 0, {}
for i = 1, n do
  local key, new, old = KEYS[i], ARGV[i + 1], olds[i]
  if (not old) or greater(new, old) or (new ~= old and not intact(old)) then
    local expire_at = expiring and ARGV[n + 1 + i]
    if expire_at and tonumber(expire_at) > 0 then
      redis.call('SET', key, new, 'PXAT', expire_at)
    else
      plain[#plain + 1] = key
      plain[#plain + 1] = new
    end
    written = written + 1
  end
end
if #plain > 0 then redis.call('MSET', unpack(plain)) end
return written
"#;

/// KEYS: for each entry its key and the key its new value was staged under (same slot).
/// ARGV: for each entry the prefix the key's value must start with (`''`: the key must be
/// absent) and its expiry (Unix ms, `0` for none). A compare-and-set per key that moves the
/// staged value into place (`RENAME`) or drops it; returns 1 or 0 per entry. Values never pass
/// through Lua: a Lua string of tens of KB costs Redis more than the rest of the write.
pub(super) const SWAP: &str = r#"
local stored = {}
for i = 1, #KEYS / 2 do
  local key, staged = KEYS[2 * i - 1], KEYS[2 * i]
  local expected = ARGV[2 * i - 1]
  local expire_at = tonumber(ARGV[2 * i])
  if redis.call('GETRANGE', key, 0, 16) == expected and redis.call('EXISTS', staged) == 1 then
    redis.call('RENAME', staged, key)
    if expire_at > 0 then
      redis.call('PEXPIREAT', key, expire_at)
    else
      redis.call('PERSIST', key)
    end
    stored[i] = 1
  else
    redis.call('DEL', staged)
    stored[i] = 0
  end
end
return stored
"#;

/// KEYS: aggregation values. For each, its header (29 bytes) and its bytes from the header's
/// live offset (bytes 22..25, u32 little-endian) on, or nil: what a push reads and rewrites,
/// without the batch part (`store::live_part`).
pub(super) const READ_LIVE: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local h = redis.call('GETRANGE', key, 0, 28)
  if #h == 0 and redis.call('EXISTS', key) == 0 then
    out[i] = false
  elseif #h < 29 then
    -- Too short to be a value (an empty one included): the reader refuses it.
    out[i] = h
  else
    local a, b, c, d = string.byte(h, 22, 25)
    out[i] = h .. redis.call('GETRANGE', key, a + b * 256 + c * 65536 + d * 16777216, -1)
  end
end
return out
"#;

/// KEYS: aggregation values. ARGV: per key the prefix its value must start with, the new
/// header, the live part's offset, the new live part (never shorter than the old one) and an
/// expiry (Unix ms; 0 leaves it). An in-place compare-and-set of the header and the live part
/// (`store::LiveSwapEntry`); returns 1 or 0 per key.
pub(super) const SWAP_LIVE: &str = r#"
local stored = {}
for i, key in ipairs(KEYS) do
  local expected, header = ARGV[5 * i - 4], ARGV[5 * i - 3]
  local at, live, expire_at = tonumber(ARGV[5 * i - 2]), ARGV[5 * i - 1], tonumber(ARGV[5 * i])
  if redis.call('EXISTS', key) == 1 and redis.call('GETRANGE', key, 0, 16) == expected then
    redis.call('SETRANGE', key, 0, header)
    redis.call('SETRANGE', key, at, live)
    if expire_at > 0 then
      redis.call('PEXPIREAT', key, expire_at)
    end
    stored[i] = 1
  else
    stored[i] = 0
  end
end
return stored
"#;

/// KEYS[1]: the watermark hash. ARGV: generation, end. Keeps the later of the two.
pub(super) const ADVANCE_WATERMARK: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (not current) or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"#;
