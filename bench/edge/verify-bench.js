// Ed25519 signature checks inside workerd, for scripts/bench-edge: each request checks the hot
// key's signed record ROUNDS times, through WebCrypto (`/webcrypto`, what the Worker uses) or
// through ed25519-dalek compiled to wasm (`/wasm`, bench/ed25519-wasm), or not at all (`/none`,
// the request's own cost). Throughput side by side gives the time of one check in the runtime.
import wasmModule from "ed25519_bg.wasm";
import { initSync, verify } from "ed25519.js";

initSync({ module: wasmModule });
const ROUNDS = 20;
let inputs;

async function prepare(env) {
  const envelope = JSON.parse(env.RECORD);
  const jwk = JSON.parse(env.PUBLIC_JWK);
  return {
    key: await crypto.subtle.importKey("jwk", { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, "Ed25519", false, ["verify"]),
    publicKey: base64url(jwk.x),
    signature: base64url(envelope.sig),
    data: new TextEncoder().encode("keygate snapshot record\n" + envelope.record),
  };
}

function base64url(text) {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

export default {
  async fetch(request, env) {
    inputs ??= await prepare(env);
    const { key, publicKey, signature, data } = inputs;
    const how = new URL(request.url).pathname;
    for (let i = 0; i < ROUNDS; i++) {
      let ok = true;
      if (how === "/webcrypto") ok = await crypto.subtle.verify("Ed25519", key, signature, data);
      else if (how === "/wasm") ok = verify(publicKey, signature, data);
      else if (how !== "/none") return new Response("unknown", { status: 404 });
      if (!ok) return new Response("does not verify", { status: 500 });
    }
    return new Response("ok");
  },
};
