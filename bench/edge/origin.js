// The origin every verified request is forwarded to: answers at once, so the benchmark measures
// the verifier, not the backend.
export default {
  async fetch() {
    return new Response("ok");
  },
};
