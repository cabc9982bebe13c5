// Preloaded (node --import) into the conformance suite when it tests the runtime, so the
// suite talks to a TLS + JWT endpoint like a real client. The suite has no option for
// headers; its requests go through Node's fetch (the SDK client, raw probes) and
// undici.request (the DNS-rebinding probe), and both use the process-wide undici dispatcher,
// so one interceptor covers them. For requests to MCP_AUTH_ORIGIN only, it
//   - adds "Authorization: Bearer $MCP_AUTH_TOKEN";
//   - verifies TLS against the host the request is sent to. undici otherwise takes the TLS
//     name from a Host header; the DNS-rebinding probe spoofs Host (evil.example.com), so
//     the handshake itself would fail and the probe would never reach the server whose
//     Host/Origin check it tests. (A browser being rebound would fail the same way: TLS
//     already stops DNS rebinding; the runtime's Host/Origin check is the second line.)
//
// The 0.2 suite's header scenarios send raw requests with node:http instead (plain HTTP,
// their own headers only). To the same origin those go over TLS with the bearer too, through
// node:https, so they reach the checks they are meant to test.
import http from 'node:http';
import https from 'node:https';
import { syncBuiltinESMExports } from 'node:module';
import { Agent, setGlobalDispatcher } from 'undici';

const target = process.env.MCP_AUTH_ORIGIN;
const token = process.env.MCP_AUTH_TOKEN;
if (!target || !token) {
  throw new Error('auth-preload.mjs needs MCP_AUTH_ORIGIN and MCP_AUTH_TOKEN');
}
const value = `Bearer ${token}`;

// withAuth adds the header to any of undici's header shapes, keeping one set by the caller.
function withAuth(headers) {
  if (headers == null) return { authorization: value };
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === 'authorization') return headers;
    }
    return [...headers, 'authorization', value];
  }
  const obj = typeof headers[Symbol.iterator] === 'function' ? Object.fromEntries(headers) : { ...headers };
  if (Object.keys(obj).some((k) => k.toLowerCase() === 'authorization')) return obj;
  return { ...obj, authorization: value };
}

setGlobalDispatcher(
  new Agent().compose((dispatch) => (opts, handler) => {
    const url = new URL(String(opts.origin));
    if (url.origin === target) {
      opts = { ...opts, headers: withAuth(opts.headers), servername: url.hostname };
    }
    return dispatch(opts, handler);
  }),
);

const { hostname: targetHost, port: targetPort } = new URL(target);
const plainRequest = http.request;
http.request = function request(options, ...rest) {
  const plain = options && typeof options === 'object' && !(options instanceof URL);
  if (plain && options.hostname === targetHost && String(options.port) === targetPort) {
    return https.request({ ...options, headers: withAuth(options.headers) }, ...rest);
  }
  return plainRequest.call(this, options, ...rest);
};
syncBuiltinESMExports();
