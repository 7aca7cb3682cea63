// The Worker's entry module: the handlers and Durable Object classes that wasm-bindgen generates
// from keygate-edge (./index.js once scripts/build-edge has staged it), under the names Workers
// calls. esbuild bundles this and the glue into edge/build/index.js.
//
// A trap in the wasm (a Rust panic aborts into one) leaves the instance unusable, so the next
// call first builds a fresh instance (`__wbg_reset_state`), and each Durable Object builds its
// Rust object again in that instance. The Rust side sets `criticalError` from its panic hook; a
// trap that is not a panic is noticed here, where it is thrown or left unhandled.
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

/** A Durable Object class (fetch only) whose Rust object lives in the current wasm instance. */
function durableObject(Rust) {
  return class {
    #state;
    #env;
    #object;
    #instance;

    constructor(state, env) {
      this.#state = state;
      this.#env = env;
      guarded(() => this.#build());
    }

    #build() {
      this.#object = new Rust(this.#state, this.#env);
      this.#instance = init.instanceId;
    }

    fetch(request) {
      return guarded(() => {
        if (this.#instance !== init.instanceId) this.#build();
        return this.#object.fetch(request);
      });
    }
  };
}

export const KeyLimiter = durableObject(wasm.KeyLimiter);
export const ChangeFeed = durableObject(wasm.ChangeFeed);
