-- Benchmark peer 3: the sticky canary split a user could write as an Envoy Lua filter
-- (EnvoyFilter + envoy.filters.http.lua), written to be fast with LuaJIT's `bit` library.
--
-- Same job as stickycanary's one-rollout case: match the host, read `x-user-id`, hash
-- salt ":" user into a bucket 0..9999, compare with round(weight * 100), overwrite the
-- routing header (so a client cannot spoof it), clear the route cache, count the request.
--
-- Honest differences, all in Lua's favour:
--  - The hash is FNV-1a 32 (xxh64 needs 64-bit multiplies that LuaJIT's `bit` ops do not
--    have); the state after the constant `salt ":"` prefix is computed once at load time.
--  - Envoy's Lua API has no way to define or increment a stat, so the "counter" is a Lua
--    table entry per worker, invisible to Prometheus. No latency histogram, no overrides,
--    no cookies, no anonymous-id minting.
local bit = require("bit")
local bxor, lshift, tobit = bit.bxor, bit.lshift, bit.tobit
local byte = string.byte

local HOST = "checkout"
local SALT = "checkout"
local THRESHOLD = 1000 -- weight 10 (%) => buckets below 1000 go to canary
local ROUTE_HEADER = "x-canary-version"

-- FNV-1a 32: h = (h xor byte) * 16777619 mod 2^32. The prime is 2^24 + 403, so the product
-- is lshift(h, 24) + h * 403; h * 403 < 2^41 stays exact in a double and tobit wraps the sum.
local function fnv_step(h, s)
  for i = 1, #s do
    h = bxor(h, byte(s, i))
    h = tobit(lshift(h, 24) + h * 403)
  end
  return h
end

local SALT_STATE = fnv_step(tobit(0x811c9dc5), SALT .. ":")
local requests_by_version = { stable = 0, canary = 0 }

function envoy_on_request(handle)
  local headers = handle:headers()
  local authority = headers:get(":authority") or ""
  local colon = authority:find(":", 1, true)
  if colon then
    authority = authority:sub(1, colon - 1)
  end
  if authority ~= HOST and authority:lower() ~= HOST then
    if headers:get(ROUTE_HEADER) ~= nil then
      headers:remove(ROUTE_HEADER)
      handle:clearRouteCache()
    end
    return
  end
  local version = "stable"
  local user = headers:get("x-user-id")
  if user ~= nil and user ~= "" then
    local bucket = (fnv_step(SALT_STATE, user) % 4294967296) % 10000
    if bucket < THRESHOLD then
      version = "canary"
    end
  end
  headers:replace(ROUTE_HEADER, version)
  handle:clearRouteCache()
  requests_by_version[version] = requests_by_version[version] + 1
end
