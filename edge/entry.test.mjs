// edge/entry.js against a stand-in for wasm-bindgen's glue that can be made to trap on demand
// (the real Worker has no way to trap from outside, which is the point). Run by scripts/test:
//   node --test edge/
// The stand-in mirrors the glue's surface entry.js uses: `__worker_init_state` (the Rust side's
// state object), `__wbg_reset_state` (a fresh instance; its start function bumps `instanceId`),
// the handlers, and Durable Object classes whose objects refuse calls from another instance, as
// the glue's do.
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

const GLUE = `
const state = { criticalError: false, instanceId: 1 };
export const resets = { count: 0 };
export function __worker_init_state() { return state; }
export function __wbg_reset_state() { resets.count++; state.instanceId++; }
function run(what) {
  if (what === "trap") throw new WebAssembly.RuntimeError("unreachable");
  if (what === "panic") { state.criticalError = true; throw new WebAssembly.RuntimeError("unreachable"); }
  if (what === "error") throw new TypeError("not a trap");
  if (what === "async trap") return Promise.reject(new WebAssembly.RuntimeError("unreachable"));
  return "instance " + state.instanceId;
}
export function fetch(request) { return run(request); }
export function queue(batch) { return run(batch); }
class RustObject {
  constructor() { this.instance = state.instanceId; RustObject.built++; }
  fetch(request) {
    if (this.instance !== state.instanceId) throw new Error("Invalid stale object from previous Wasm instance");
    return run(request);
  }
}
RustObject.built = 0;
export { RustObject as KeyLimiter, RustObject as ChangeFeed };
`;

const listeners = {};
globalThis.addEventListener = (type, listener) => {
  listeners[type] = listener;
};
const consoleError = console.error;
console.error = () => {};

const dir = mkdtempSync(join(tmpdir(), "keygate-entry-"));
writeFileSync(join(dir, "index.js"), GLUE);
copyFileSync(new URL("./entry.js", import.meta.url), join(dir, "entry.js"));
const entry = await import(pathToFileURL(join(dir, "entry.js")));
const glue = await import(pathToFileURL(join(dir, "index.js")));
const worker = entry.default;

test.after(() => {
  console.error = consoleError;
});

test("a call that does not trap keeps the instance", () => {
  const before = glue.resets.count;
  assert.equal(worker.fetch("ok"), worker.fetch("ok"));
  assert.equal(worker.queue("ok"), worker.fetch("ok"));
  assert.throws(() => worker.fetch("error"), TypeError);
  assert.equal(worker.fetch("ok"), worker.fetch("ok"));
  assert.equal(glue.resets.count, before);
});

test("a trap is rethrown and the next call runs on a fresh instance", () => {
  const first = worker.fetch("ok");
  assert.throws(() => worker.fetch("trap"), WebAssembly.RuntimeError);
  const second = worker.fetch("ok");
  assert.notEqual(second, first);
  assert.equal(worker.fetch("ok"), second);
});

test("a Rust panic (criticalError) resets before the next call, once", () => {
  const before = glue.resets.count;
  assert.throws(() => worker.queue("panic"), WebAssembly.RuntimeError);
  worker.queue("ok");
  worker.fetch("ok");
  assert.equal(glue.resets.count, before + 1);
});

test("a trap that surfaces as an unhandled rejection or error event resets too", async () => {
  let before = glue.resets.count;
  const rejected = worker.fetch("async trap");
  await assert.rejects(rejected, WebAssembly.RuntimeError);
  listeners.unhandledrejection({ reason: await rejected.catch((error) => error) });
  worker.fetch("ok");
  assert.equal(glue.resets.count, before + 1);

  before = glue.resets.count;
  listeners.error({ error: new WebAssembly.RuntimeError("unreachable") });
  listeners.error({ error: new TypeError("not a trap") });
  worker.fetch("ok");
  assert.equal(glue.resets.count, before + 1);
});

test("a Durable Object keeps its Rust object until a trap, then builds it in the fresh instance", () => {
  const limiter = new entry.KeyLimiter({}, {});
  const feed = new entry.ChangeFeed({}, {});
  const built = glue.KeyLimiter.built;
  const first = limiter.fetch("ok");
  assert.equal(limiter.fetch("ok"), first);
  assert.equal(glue.KeyLimiter.built, built);

  assert.throws(() => limiter.fetch("trap"), WebAssembly.RuntimeError);
  const second = limiter.fetch("ok");
  assert.notEqual(second, first);
  assert.equal(feed.fetch("ok"), second, "the other object moves to the fresh instance too");
  assert.equal(glue.KeyLimiter.built, built + 2);
});
