// The Worker's entry module: the handlers and Durable Object classes that wasm-bindgen generates
// from keygate-edge (./index.js once scripts/build-edge has staged it), under the names Workers
// calls. esbuild bundles this and the glue into edge/build/index.js.
//
// A trap in the wasm (a Rust panic aborts into one) leaves the instance unusable, so the next
// call first builds a fresh instance (`__wbg_reset_state`), and each Durable Object builds its
// Rust object again in that instance. The Rust side sets `criticalError` from its panic hook; a
// trap that is not a panic is noticed here, where it is thrown or left unhandled.
import { DurableObject } from "cloudflare:workers";
import * as wasm from "./index.js";

const init = wasm.__worker_init_state();

function noteTrap(error) {
  if (error instanceof WebAssembly.RuntimeError) {
    console.error("keygate: the wasm instance trapped; it is rebuilt before the next call", error);
    init.criticalError = true;
  }
}

addEventListener("error", (event) => noteTrap(event.error));
addEventListener("unhandledrejection", (event) => noteTrap(event.reason));

/** Runs `call` on a sound instance: a fresh one if the last call trapped. */
function guarded(call) {
  if (init.criticalError) {
    wasm.__wbg_reset_state();
    init.criticalError = false;
  }
  try {
    return call();
  } catch (error) {
    noteTrap(error);
    throw error;
  }
}

export default {
  fetch: (request, env, ctx) => guarded(() => wasm.fetch(request, env, ctx)),
  queue: (batch, env, ctx) => guarded(() => wasm.queue(batch, env, ctx)),
};

/**
 * A Durable Object class whose Rust object lives in the current wasm instance. It offers `methods`
 * and nothing else: every public method of a DurableObject is callable over JS RPC.
 */
function durableObject(Rust, methods) {
  const objects = new WeakMap(); // this -> { object, instance }
  const current = (self) => {
    const held = objects.get(self);
    if (held.instance !== init.instanceId) {
      held.object = new Rust(self.ctx, self.env);
      held.instance = init.instanceId;
    }
    return held.object;
  };
  const Class = class extends DurableObject {
    constructor(state, env) {
      super(state, env);
      objects.set(this, { object: null, instance: null });
      guarded(() => current(this));
    }
  };
  for (const name of methods) {
    Class.prototype[name] = function (...args) {
      return guarded(() => current(this)[name](...args));
    };
  }
  return Class;
}

export const KeyLimiter = durableObject(wasm.KeyLimiter, ["take"]);
export const ChangeFeed = durableObject(wasm.ChangeFeed, ["fetch"]);
