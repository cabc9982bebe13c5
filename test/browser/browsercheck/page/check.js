// What a web page can do against mcp-runtime, run in Chromium by browsercheck. The same file
// is served on the allowed origin and on the foreign one: only the origin differs. Every
// function resolves (never rejects) with a plain object that the driver hands back to Go.
'use strict';

(() => {
  const since = (t0) => Math.round(performance.now() - t0);

  // getTicket is what an MCP web app does first: POST /auth/ticket with its bearer token.
  // The Authorization header makes it a non-simple request, so the browser sends a CORS
  // preflight (OPTIONS) first and reads the answer only if the runtime allows this origin.
  async function getTicket(base, token) {
    const t0 = performance.now();
    try {
      const resp = await fetch(base + '/auth/ticket', {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + token },
        mode: 'cors',
        credentials: 'omit',
        cache: 'no-store',
      });
      const text = await resp.text();
      let ticket = '';
      try {
        ticket = JSON.parse(text).ticket || '';
      } catch (_) {
        // not JSON: reported through ok=false and the status
      }
      return { ok: resp.ok && ticket !== '', status: resp.status, ticket, ms: since(t0) };
    } catch (err) {
      return { ok: false, status: 0, error: String(err), ms: since(t0) };
    }
  }

  // forgePost is a cross-site request forgery attempt: a "simple" POST (text/plain body, no
  // custom header) needs no preflight, so the browser sends it whatever the CORS policy and
  // only hides the answer. The runtime must refuse it on the Origin before handling it.
  async function forgePost(url, body) {
    const t0 = performance.now();
    try {
      const resp = await fetch(url, {
        method: 'POST',
        mode: 'no-cors',
        credentials: 'include',
        headers: { 'Content-Type': 'text/plain' },
        body,
      });
      return { sent: true, type: resp.type, status: resp.status, ms: since(t0) };
    } catch (err) {
      return { sent: false, error: String(err), ms: since(t0) };
    }
  }

  // tryOpen opens a WebSocket with subprotocol mcp and reports what the page saw: for a
  // refused upgrade, error then close (1006) and no open, no message.
  function tryOpen(url, timeoutMs) {
    const t0 = performance.now();
    return new Promise((resolve) => {
      const out = { events: [], opened: false, messages: 0, closeCode: 0, closeReason: '', wasClean: false };
      let ws;
      const finish = (extra) => {
        clearTimeout(timer);
        resolve({ ...out, ...extra, ms: since(t0) });
      };
      const timer = setTimeout(() => {
        try {
          ws.close();
        } catch (_) {
          // already closed
        }
        finish({ timedOut: true });
      }, timeoutMs);
      try {
        ws = new WebSocket(url, 'mcp');
      } catch (err) {
        finish({ constructorError: String(err) });
        return;
      }
      ws.onopen = () => {
        out.events.push('open');
        out.opened = true;
        out.protocol = ws.protocol;
        ws.close(1000, 'browsercheck: opened, closing');
      };
      ws.onmessage = () => {
        out.events.push('message');
        out.messages++;
      };
      ws.onerror = () => out.events.push('error');
      ws.onclose = (ev) => {
        out.events.push('close');
        out.closeCode = ev.code;
        out.closeReason = ev.reason;
        out.wasClean = ev.wasClean;
        finish({});
      };
    });
  }

  // session runs an MCP client over one WebSocket (one JSON-RPC message per text frame):
  // initialize, notifications/initialized, tools/list, tools/call of tool, then a clean close.
  function session(url, tool, args, timeoutMs) {
    const t0 = performance.now();
    return new Promise((resolve) => {
      const out = { events: [], opened: false, protocol: '', frames: 0, notifications: 0, closeCode: 0, closeReason: '' };
      let ws;
      let done = false;
      const finish = (extra) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({ ...out, ...extra, ms: since(t0) });
      };
      const timer = setTimeout(() => {
        try {
          ws.close();
        } catch (_) {
          // already closed
        }
        finish({ error: 'timed out after ' + timeoutMs + ' ms' });
      }, timeoutMs);
      const send = (msg) => ws.send(JSON.stringify(msg));
      try {
        ws = new WebSocket(url, 'mcp');
      } catch (err) {
        finish({ error: 'new WebSocket: ' + String(err) });
        return;
      }
      ws.onopen = () => {
        out.events.push('open');
        out.opened = true;
        out.protocol = ws.protocol;
        send({
          jsonrpc: '2.0', id: 1, method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'mcp-fleet-browsercheck', version: '1' } },
        });
      };
      ws.onmessage = (ev) => {
        out.frames++;
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch (err) {
          out.error = 'a frame is not JSON: ' + String(ev.data).slice(0, 200);
          ws.close(1000);
          return;
        }
        if (msg.id === undefined || msg.id === null) {
          out.notifications++;
          return;
        }
        if (msg.error) {
          out.error = 'request ' + msg.id + ' failed: ' + JSON.stringify(msg.error);
          ws.close(1000);
          return;
        }
        switch (msg.id) {
          case 1:
            out.initialize = { protocolVersion: msg.result.protocolVersion, serverInfo: msg.result.serverInfo };
            send({ jsonrpc: '2.0', method: 'notifications/initialized' });
            send({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} });
            break;
          case 2:
            out.tools = (msg.result.tools || []).map((t) => t.name);
            send({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: tool, arguments: args } });
            break;
          case 3:
            out.callResult = msg.result;
            ws.close(1000, 'browsercheck: done');
            break;
          default:
            out.error = 'unexpected response id ' + JSON.stringify(msg.id);
        }
      };
      ws.onerror = () => out.events.push('error');
      ws.onclose = (ev) => {
        out.events.push('close');
        out.closeCode = ev.code;
        out.closeReason = ev.reason;
        finish({});
      };
    });
  }

  // app is the whole allowed-page flow: a ticket from fetch, then the MCP session with it.
  async function app(base, token, wsURL, tool, args, timeoutMs) {
    const ticket = await getTicket(base, token);
    if (!ticket.ok) {
      return { ticket };
    }
    const sess = await session(wsURL + '?ticket=' + encodeURIComponent(ticket.ticket), tool, args, timeoutMs);
    return { ticket: { ...ticket, ticket: '(used)' }, session: sess };
  }

  window.browsercheck = { getTicket, forgePost, tryOpen, session, app, origin: window.location.origin };
})();
