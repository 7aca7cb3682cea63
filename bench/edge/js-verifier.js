// The baseline: a careful hand-written JavaScript verifier of the same key format, as a team would
// write it without keygate. Checksum (CRC32, base62), environment, Map cache in front of KV,
// WebCrypto SHA-256, constant-time hex compare, status and permission checks, forward with identity.
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const encoder = new TextEncoder();
const cache = new Map();
const CACHE_TTL_MS = 300000;

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) crc = CRC_TABLE[(crc ^ b) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function base62(value) {
  let out = "";
  for (let i = 0; i < 6; i++) {
    out = ALPHABET[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

function deny(status, code) {
  return new Response(JSON.stringify({ error: { code } }), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

function equalHex(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

async function record(env, id) {
  const hit = cache.get(id);
  if (hit && Date.now() - hit.at < CACHE_TTL_MS) return hit.record;
  const text = await env.KEYS.get(id);
  // The signed envelope's record, unchecked: the baseline verifies keys, not record signatures.
  const value = text === null ? null : JSON.parse(JSON.parse(text).record);
  cache.set(id, { record: value, at: Date.now() });
  return value;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/public/")) return fetch(request);
    const auth = request.headers.get("authorization") ?? "";
    const key = auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
    const parts = key.split("_");
    if (parts.length !== 4 || parts[0] !== "kg" || parts[2].length !== 22 || parts[3].length !== 49) {
      return deny(401, "invalid_key");
    }
    if (base62(crc32(encoder.encode(key.slice(0, -6)))) !== key.slice(-6)) return deny(401, "invalid_key");
    if (parts[1] !== "live") return deny(401, "wrong_environment");
    const stored = await record(env, parts[2]);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(key)));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    if (!stored || stored.status === "deleted" || !equalHex(hex, stored.digest)) return deny(401, "invalid_key");
    if (stored.status !== "active") return deny(401, stored.status);
    const now = Date.now() / 1000;
    if (stored.expires_at !== undefined && now >= stored.expires_at) return deny(401, "expired");
    const needed = "customer:read";
    const [resource] = needed.split(":");
    const granted = stored.permissions.some((p) => p === "*" || p === needed || p === `${resource}:*`);
    if (!granted) return deny(403, "insufficient_permissions");
    const headers = new Headers(request.headers);
    headers.delete("authorization");
    headers.set("x-keygate-key-id", parts[2]);
    headers.set("x-keygate-owner-id", stored.owner_id);
    headers.set("x-keygate-permissions", stored.permissions.join(","));
    return fetch(new Request(request, { headers }));
  },
};
