// Golden-vector agreement for the built filter (contract 2).
//
// Usage: node wasm_golden.mjs <stickycanary-golden.wasm> <golden.json> [<stickycanary.wasm>]
//
// 1. Instantiates the wasm32 test build (feature golden-export: the production code plus one
//    export) with every import stubbed (proxy-wasm hostcalls and WASI are never reached by
//    the bucket function) and calls its exported `stickycanary_bucket`, which is the
//    request path's own `assign::bucket_bytes`, on every vector.
// 2. Recomputes every bucket with an independent XXH64 written here in JavaScript, to show
//    the assignment is reproducible outside Rust.
// 3. Given the production build, checks that it does not export `stickycanary_bucket` (the
//    test hook must not ship) and does export the proxy-wasm request callbacks.
// Prints one line per failure and a closing "N passed, N failed" line; exits 1 on any failure.
import { readFileSync } from "node:fs";

const [wasmPath, goldenPath, productionPath] = process.argv.slice(2);
if (!wasmPath || !goldenPath) {
  console.error("usage: node wasm_golden.mjs <stickycanary-golden.wasm> <golden.json> [<stickycanary.wasm>]");
  process.exit(2);
}

const MASK = (1n << 64n) - 1n;
const P1 = 11400714785074694791n;
const P2 = 14029467366897019727n;
const P3 = 1609587929392839161n;
const P4 = 9650029242287828579n;
const P5 = 2870177450012600261n;
const rotl = (x, r) => ((x << r) | (x >> (64n - r))) & MASK;
const mul = (a, b) => (a * b) & MASK;
const add = (a, b) => (a + b) & MASK;
const round = (acc, lane) => mul(rotl(add(acc, mul(lane, P2)), 31n), P1);
const merge = (acc, v) => add(mul(acc ^ round(0n, v), P1), P4);

function xxh64(bytes, seed = 0n) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.length;
  let offset = 0;
  let h;
  if (len >= 32) {
    let v1 = add(add(seed, P1), P2), v2 = add(seed, P2), v3 = seed, v4 = (seed - P1) & MASK;
    while (offset + 32 <= len) {
      v1 = round(v1, view.getBigUint64(offset, true));
      v2 = round(v2, view.getBigUint64(offset + 8, true));
      v3 = round(v3, view.getBigUint64(offset + 16, true));
      v4 = round(v4, view.getBigUint64(offset + 24, true));
      offset += 32;
    }
    h = add(add(rotl(v1, 1n), rotl(v2, 7n)), add(rotl(v3, 12n), rotl(v4, 18n)));
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = add(seed, P5);
  }
  h = add(h, BigInt(len));
  for (; offset + 8 <= len; offset += 8) {
    h = add(mul(rotl(h ^ round(0n, view.getBigUint64(offset, true)), 27n), P1), P4);
  }
  if (offset + 4 <= len) {
    h = add(mul(rotl(h ^ mul(BigInt(view.getUint32(offset, true)), P1), 23n), P2), P3);
    offset += 4;
  }
  for (; offset < len; offset++) {
    h = mul(rotl(h ^ mul(BigInt(bytes[offset]), P5), 11n), P1);
  }
  h = mul(h ^ (h >> 33n), P2);
  h = mul(h ^ (h >> 29n), P3);
  return h ^ (h >> 32n);
}

const encoder = new TextEncoder();
const jsBucket = (salt, user) => Number(xxh64(encoder.encode(`${salt}:${user}`)) % 10000n);

// The published XXH64 reference values, so the JS implementation is itself checked.
const references = [["", 0xef46db3751d8e999n], ["a", 0xd24ec4f1a98c6e5bn], ["abc", 0x44bc2cf5ad770999n]];
let passed = 0;
let failed = 0;
for (const [input, expected] of references) {
  if (xxh64(encoder.encode(input)) === expected) passed++;
  else { failed++; console.log(`FAIL js xxh64(${JSON.stringify(input)}) != ${expected.toString(16)}`); }
}

const module = new WebAssembly.Module(readFileSync(wasmPath));
const imports = {};
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (kind !== "function") continue;
  imports[from] ??= {};
  imports[from][name] = () => 0;
}
const { exports } = new WebAssembly.Instance(module, imports);
for (const required of ["stickycanary_bucket", "proxy_on_memory_allocate", "memory"]) {
  if (!(required in exports)) {
    console.error(`the wasm build does not export ${required}`);
    process.exit(1);
  }
}
exports._initialize?.();

function place(text) {
  const bytes = encoder.encode(text);
  const pointer = exports.proxy_on_memory_allocate(Math.max(bytes.length, 1));
  new Uint8Array(exports.memory.buffer, pointer, bytes.length).set(bytes);
  return [pointer, bytes.length];
}

const vectors = JSON.parse(readFileSync(goldenPath, "utf8"));
for (const vector of vectors) {
  const [saltPtr, saltLen] = place(vector.salt);
  const [userPtr, userLen] = place(vector.user);
  const wasm = exports.stickycanary_bucket(saltPtr, saltLen, userPtr, userLen) >>> 0;
  const js = jsBucket(vector.salt, vector.user);
  const label = `salt=${JSON.stringify(vector.salt)} user=${JSON.stringify(vector.user).slice(0, 40)}`;
  if (wasm === vector.bucket && js === vector.bucket) {
    passed++;
  } else {
    failed++;
    console.log(`FAIL ${label}: golden ${vector.bucket}, wasm ${wasm}, js ${js}`);
  }
}
if (productionPath) {
  const names = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(productionPath))).map((e) => e.name);
  if (names.includes("stickycanary_bucket")) {
    failed++;
    console.log(`FAIL ${productionPath} exports the test hook stickycanary_bucket`);
  } else if (!names.includes("proxy_on_request_headers")) {
    failed++;
    console.log(`FAIL ${productionPath} does not export proxy_on_request_headers: not a filter build`);
  } else {
    passed++;
    console.log(`production build ${productionPath}: no stickycanary_bucket export (${names.length} exports)`);
  }
}
console.log(`wasm_golden: ${vectors.length} vectors through ${wasmPath} and an independent JS XXH64`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && vectors.length > 0 ? 0 : 1);
