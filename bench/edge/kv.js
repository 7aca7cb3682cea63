// A stand-in for Workers KV behind a kvNamespace binding, for benchmarking under standalone
// workerd: serves the records it was given (RECORDS, JSON {key: value}); 404 for anything else.
export default {
  async fetch(request, env) {
    const records = (globalThis.records ??= JSON.parse(env.RECORDS));
    const name = decodeURIComponent(new URL(request.url).pathname.split("/").pop());
    const value = records[name];
    return value === undefined ? new Response(null, { status: 404 }) : new Response(value);
  },
};
