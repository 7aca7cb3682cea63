// edge/entry.js against a stand-in for wasm-bindgen's glue that can be made to trap on demand
// (the real Worker has no way to trap from outside, which is the point). Run by scripts/test:
//   node --test edge/
// The stand-in mirrors the glue's surface entry.js uses: `__worker_init_state` (the Rust side's
// state object), `__wbg_reset_state` (a fresh instance; its start function bumps `instanceId`),
// the handlers, and Durable Object classes whose objects refuse calls from another instance, as
// the glue's do.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
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
  constructor(ctx, env) { this.instance = state.instanceId; this.ctx = ctx; this.env = env; RustObject.built++; }
  fetch(request) {
    if (this.instance !== state.instanceId) throw new Error("Invalid stale object from previous Wasm instance");
    return run(request);
  }
  take(ask) { return ask === "args" ? this.ctx.id + "/" + this.env.id : this.fetch(ask); }
  internal() { return "not for RPC"; }
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
// cloudflare:workers exists only in the runtime: its DurableObject base class, as the runtime
// defines it (the state as `ctx`, and `env`).
const IMPORT = 'import { DurableObject } from "cloudflare:workers";';
const source = readFileSync(new URL("./entry.js", import.meta.url), "utf8");
assert.ok(source.includes(IMPORT), "entry.js imports DurableObject from cloudflare:workers");
writeFileSync(
  join(dir, "entry.js"),
  source.replace(
    IMPORT,
    "class DurableObject { constructor(ctx, env) { this.ctx = ctx; this.env = env; } }",
  ),
);
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
  const [state, env] = [{ id: "state" }, { id: "env" }];
  const limiter = new entry.KeyLimiter(state, env);
  const feed = new entry.ChangeFeed(state, env);
  const built = glue.KeyLimiter.built;
  const first = limiter.take("ok");
  assert.equal(limiter.take("ok"), first);
  assert.equal(glue.KeyLimiter.built, built);

  assert.throws(() => limiter.take("trap"), WebAssembly.RuntimeError);
  const second = limiter.take("ok");
  assert.notEqual(second, first);
  assert.equal(feed.fetch("ok"), second, "the other object moves to the fresh instance too");
  assert.equal(glue.KeyLimiter.built, built + 2);
  assert.equal(limiter.take("args"), "state/env", "rebuilt with the runtime's state and env");
});

test("a Durable Object offers its named methods and nothing else over RPC", () => {
  const limiter = new entry.KeyLimiter({}, {});
  const feed = new entry.ChangeFeed({}, {});
  assert.equal(typeof limiter.take, "function");
  assert.equal(limiter.internal, undefined);
  assert.equal(limiter.fetch, undefined);
  assert.equal(feed.take, undefined);
});
