// A TypeScript-SDK MCP client over WebSocket, driven by wsclient_test.go.
//
//   node client.mjs URL [TOOL]
//
// MCP_ORIGIN: the Origin header to send, as the browser page the ticket was issued to
// would. The SDK's WebSocketClientTransport only takes a URL and uses the global WebSocket
// (Node 22: undici's), which sends no Origin unless told to; undici accepts a non-standard
// {protocols, headers} init, so a subclass adds the header and everything else is the SDK's.
//
// Prints one JSON line: {"ok":true,"tools":[...],"result":{...}} or {"ok":false,"error":"..."}
// and exits 0 or 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { WebSocketClientTransport } from '@modelcontextprotocol/sdk/client/websocket.js';

const [url, tool = 'test_simple_text'] = process.argv.slice(2);
const origin = process.env.MCP_ORIGIN;

if (origin) {
  const NodeWebSocket = globalThis.WebSocket;
  globalThis.WebSocket = class extends NodeWebSocket {
    constructor(u, protocols) {
      super(u, { protocols, headers: { Origin: origin } });
    }
  };
}

function done(out) {
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(out.ok ? 0 : 1);
}

// Bounded: a hang is a failure, not a stuck test.
setTimeout(() => done({ ok: false, error: 'timed out after 20s' }), 20_000).unref();

try {
  const client = new Client({ name: 'mcp-fleet-wsclient', version: '1.0.0' });
  await client.connect(new WebSocketClientTransport(new URL(url)));
  const { tools } = await client.listTools();
  const result = await client.callTool({ name: tool, arguments: {} });
  await client.close();
  done({ ok: true, server: client.getServerVersion(), tools: tools.map((t) => t.name), result });
} catch (err) {
  done({ ok: false, error: String(err?.message ?? err) });
}
