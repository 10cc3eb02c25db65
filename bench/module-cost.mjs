// The module's own time per request in V8, without Envoy: runs proxy-wasm modules in Node
// (whose V8 is the same engine family Envoy embeds) with every hostcall stubbed by a few
// lines of JavaScript, and prints the median nanoseconds per request of each module over
// interleaved rounds, and each module's ratio to the last one.
//
// Usage: node module-cost.mjs [--requests N] [--rounds N] [--pollute KIB] NAME=PATH.wasm=PLUGIN_CONFIG ...
//
// Each request is one full HTTP context as Envoy drives it: create, request headers (the
// headers this benchmark's wrk sends, plus those Envoy adds before filters run), response
// headers, log, done, delete. The stubs do the least a host can: header reads return a
// serialized map written through the module's own allocator (as Envoy does, so that cost
// stays in), writes and stats are counted, the clock advances 1 µs per read and
// `response.code` is 200. What is left is what Envoy's CPU time cannot split out: the
// module's own code, its allocator and the SDK's dispatch. It complements the paired
// Envoy comparison of `make bench-filter`, which this cannot replace: the hostcalls
// themselves are free here.
//
// `--pollute KIB` walks a buffer of that size before every request (untimed), so each
// request finds the caches as cold as inside Envoy, whose own work on a request evicts the
// module's code and data: a lookup that is cheap hot can be dear cold. Noisier.
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
let requests = 200_000;
let rounds = 7;
let polluteKib = 0;
const modules = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--requests") requests = Number(args[++i]);
  else if (args[i] === "--rounds") rounds = Number(args[++i]);
  else if (args[i] === "--pollute") polluteKib = Number(args[++i]);
  else {
    const [name, path, ...config] = args[i].split("=");
    if (!name || !path) {
      console.error(`module-cost: expected NAME=PATH.wasm=PLUGIN_CONFIG, got ${JSON.stringify(args[i])}`);
      process.exit(2);
    }
    modules.push({ name, path, config: config.join("=") });
  }
}
if (modules.length === 0 || !(requests > 0) || !(rounds > 0) || !(polluteKib >= 0)) {
  console.error("usage: node module-cost.mjs [--requests N] [--rounds N] [--pollute KIB] NAME=PATH.wasm=PLUGIN_CONFIG ...");
  process.exit(2);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const USERS = 100_000;

// proxy-wasm's serialized header map: count, (name length, value length) pairs, then each
// name and value followed by a NUL.
function serializeHeaders(pairs) {
  const encoded = pairs.map(([k, v]) => [encoder.encode(k), encoder.encode(v)]);
  const size = 4 + encoded.length * 8 + encoded.reduce((n, [k, v]) => n + k.length + v.length + 2, 0);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, encoded.length, true);
  let sizes = 4;
  let data = 4 + encoded.length * 8;
  for (const [k, v] of encoded) {
    view.setUint32(sizes, k.length, true);
    view.setUint32(sizes + 4, v.length, true);
    sizes += 8;
    bytes.set(k, data);
    data += k.length + 1;
    bytes.set(v, data);
    data += v.length + 1;
  }
  return bytes;
}

// One request's headers per user, prepared before timing.
const requestHeaders = Array.from({ length: 1024 }, (_, i) =>
  serializeHeaders([
    [":authority", "checkout"],
    [":path", "/"],
    [":method", "GET"],
    [":scheme", "http"],
    ["x-user-id", `u${(i * 7919) % USERS}`],
    ["x-forwarded-proto", "http"],
    ["x-request-id", `0c9a4f2e-1b7d-4a61-9d3e-${String(i).padStart(12, "0")}`],
  ]),
);
const responseCode = new Uint8Array(8);
new DataView(responseCode.buffer).setBigInt64(0, 200n, true);

function load({ name, path, config }) {
  const state = { instance: null, request: 0, clock: 0n, writes: 0, stats: 0 };
  const memory = () => state.instance.exports.memory.buffer;
  // Copies `bytes` into module memory as Envoy does: through proxy_on_memory_allocate.
  const give = (bytes, dataPtr, sizePtr) => {
    const at = state.instance.exports.proxy_on_memory_allocate(bytes.length);
    new Uint8Array(memory(), at, bytes.length).set(bytes);
    const view = new DataView(memory());
    view.setUint32(dataPtr, at, true);
    view.setUint32(sizePtr, bytes.length, true);
    return 0;
  };
  const configBytes = encoder.encode(config);
  let metrics = 0;
  const env = {
    proxy_log: (_level, ptr, len) => {
      console.error(`module-cost: ${name}: ${decoder.decode(new Uint8Array(memory(), ptr, len))}`);
      return 0;
    },
    proxy_get_buffer_bytes: (_type, _start, _len, dataPtr, sizePtr) => give(configBytes, dataPtr, sizePtr),
    proxy_get_header_map_pairs: (_map, dataPtr, sizePtr) =>
      give(requestHeaders[state.request % requestHeaders.length], dataPtr, sizePtr),
    proxy_get_header_map_value: () => 1, // NotFound: the modules measured here read the map whole
    proxy_replace_header_map_value: () => (state.writes++, 0),
    proxy_remove_header_map_value: () => (state.writes++, 0),
    proxy_add_header_map_value: () => (state.writes++, 0),
    proxy_get_property: (_ptr, _len, dataPtr, sizePtr) => give(responseCode, dataPtr, sizePtr),
    proxy_get_current_time_nanoseconds: (ptr) => {
      state.clock += 1000n;
      new DataView(memory()).setBigUint64(ptr, 1_700_000_000_000_000_000n + state.clock, true);
      return 0;
    },
    proxy_define_metric: (_type, _ptr, _len, idPtr) => {
      new DataView(memory()).setUint32(idPtr, metrics++, true);
      return 0;
    },
    proxy_increment_metric: () => (state.stats++, 0),
    proxy_record_metric: () => (state.stats++, 0),
    proxy_set_effective_context: () => 0,
    proxy_done: () => 0,
  };
  const module = new WebAssembly.Module(readFileSync(path));
  const imports = { env: {}, wasi_snapshot_preview1: {} };
  for (const { module: from, name: call } of WebAssembly.Module.imports(module)) {
    imports[from][call] =
      env[call] ??
      (() => {
        throw new Error(`${name} called ${from}.${call}, which this harness does not stub`);
      });
  }
  imports.wasi_snapshot_preview1.environ_sizes_get = (count, size) => {
    new DataView(memory()).setUint32(count, 0, true);
    new DataView(memory()).setUint32(size, 0, true);
    return 0;
  };
  state.instance = new WebAssembly.Instance(module, imports);
  const x = state.instance.exports;
  x._initialize?.();
  x.proxy_on_context_create(1, 0);
  if (!x.proxy_on_configure(1, configBytes.length)) {
    throw new Error(`${name}: the module rejected its config ${JSON.stringify(config)}`);
  }
  let context = 2;
  const one = () => {
    const id = context++;
    x.proxy_on_context_create(id, 1);
    x.proxy_on_request_headers(id, 7, 1);
    x.proxy_on_response_headers(id, 4, 0);
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
    state.request++;
  };
  return { name, state, one };
}

let loaded;
try {
  loaded = modules.map(load);
} catch (err) {
  console.error(`module-cost: ${err.message}`);
  process.exit(1);
}
const junk = new Int32Array((polluteKib * 1024) / 4);
let sink = 0;
const pollute = () => {
  for (let i = 0; i < junk.length; i += 16) sink += junk[i]++;
};
const run = (m, n) => {
  let total = 0n;
  for (let i = 0; i < n; i++) {
    if (polluteKib) pollute();
    const start = process.hrtime.bigint();
    m.one();
    total += process.hrtime.bigint() - start;
  }
  return Number(total) / n;
};
// Warm-up: enough calls for V8 to tier every hot function up to its optimizing compiler.
for (const m of loaded) run(m, requests);
const samples = loaded.map(() => []);
for (let round = 0; round < rounds; round++) {
  // Rotate the order, so no module always runs first (or right after another).
  for (let k = 0; k < loaded.length; k++) {
    const i = (k + round) % loaded.length;
    samples[i].push(run(loaded[i], requests));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(samples[samples.length - 1]);
for (const [i, m] of loaded.entries()) {
  const ns = median(samples[i]);
  const perRequest = (count) => (count / (m.state.request || 1)).toFixed(1);
  console.log(
    `${m.name.padEnd(12)} ${ns.toFixed(0).padStart(6)} ns/request (min ${Math.min(...samples[i]).toFixed(0)}, max ${Math.max(...samples[i]).toFixed(0)}; ` +
      `${perRequest(m.state.writes)} header writes, ${perRequest(m.state.stats)} stat updates per request), ${(ns / base).toFixed(2)}x ${loaded[loaded.length - 1].name}`,
  );
}
