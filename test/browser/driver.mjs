// Drives the browsercheck pages in a Chromium that browsercheck (Go) started and owns.
//
//   node driver.mjs < job.json
//
// job.json: {"cdpURL": "ws://127.0.0.1:…/devtools/browser/…", "timeoutMs": 60000,
//            "pages": {"allowed": "http://127.0.0.1:…/", "foreign": "http://127.0.0.1:…/"},
//            "steps": [{"page": "allowed", "fn": "app", "args": [...]}, ...]}
//
// Each page gets its own browser context, a CDP session recording its network events (CORS
// preflights and failures, WebSocket handshakes and frames) and its console. Steps call
// window.browsercheck[fn](...args) in order (page/check.js). Prints one JSON line:
// {"ok": true, "steps": [...], "network": {...}, "console": {...}} or {"ok": false, "error": …}
// and exits 0 or 1. Tickets are redacted from every URL and console line it prints.
import { chromium } from 'playwright-core';

function done(out) {
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(out.ok ? 0 : 1));
}

const redact = (s) => String(s ?? '').replace(/([?&]ticket=)[^&#\s'"]*/g, '$1REDACTED');

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

// watch records what the browser did on the network for one page, as CDP reports it.
async function watch(context, page, network, consoleLines) {
  const cdp = await context.newCDPSession(page);
  const rec = (ev) => network.push(ev);
  cdp.on('Network.requestWillBeSent', (e) => rec({ ev: 'request', id: e.requestId, method: e.request.method, url: redact(e.request.url), type: e.type }));
  cdp.on('Network.responseReceived', (e) => rec({ ev: 'response', id: e.requestId, status: e.response.status, url: redact(e.response.url), type: e.type }));
  cdp.on('Network.loadingFailed', (e) => rec({
    ev: 'failed', id: e.requestId, type: e.type, errorText: e.errorText,
    corsError: e.corsErrorStatus?.corsError ?? '', blockedReason: e.blockedReason ?? '',
  }));
  cdp.on('Network.webSocketCreated', (e) => rec({ ev: 'ws-created', id: e.requestId, url: redact(e.url) }));
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => rec({
    ev: 'ws-handshake-request', id: e.requestId, origin: e.request.headers.Origin ?? e.request.headers.origin ?? '',
  }));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => rec({ ev: 'ws-handshake-response', id: e.requestId, status: e.response.status }));
  cdp.on('Network.webSocketFrameSent', (e) => rec({ ev: 'ws-frame-sent', id: e.requestId }));
  cdp.on('Network.webSocketFrameReceived', (e) => rec({ ev: 'ws-frame-received', id: e.requestId }));
  cdp.on('Network.webSocketFrameError', (e) => rec({ ev: 'ws-frame-error', id: e.requestId, errorText: e.errorMessage }));
  cdp.on('Network.webSocketClosed', (e) => rec({ ev: 'ws-closed', id: e.requestId }));
  await cdp.send('Network.enable');
  page.on('console', (m) => consoleLines.push(redact(`${m.type()}: ${m.text()}`)));
  page.on('pageerror', (err) => consoleLines.push(redact(`pageerror: ${err.message}`)));
}

let browser;
try {
  const job = await readStdin();
  setTimeout(() => done({ ok: false, error: `driver timed out after ${job.timeoutMs} ms` }), job.timeoutMs).unref();
  browser = await chromium.connectOverCDP(job.cdpURL, { timeout: 15_000 });
  const pages = {};
  const network = {};
  const consoleLines = {};
  for (const [name, url] of Object.entries(job.pages)) {
    const context = await browser.newContext();
    const page = await context.newPage();
    network[name] = [];
    consoleLines[name] = [];
    await watch(context, page, network[name], consoleLines[name]);
    const resp = await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
    if (!resp || !resp.ok()) throw new Error(`loading the ${name} page ${url}: status ${resp?.status()}`);
    pages[name] = page;
  }
  const steps = [];
  for (const s of job.steps) {
    const page = pages[s.page];
    if (!page) throw new Error(`step ${s.fn}: no page named ${s.page}`);
    const t0 = Date.now();
    const result = await page.evaluate(([fn, args]) => window.browsercheck[fn](...args), [s.fn, s.args ?? []]);
    steps.push({ page: s.page, fn: s.fn, result, ms: Date.now() - t0 });
  }
  // Events of a WebSocket that closed last may still be in flight on the CDP sessions.
  await new Promise((r) => setTimeout(r, 200));
  const origins = {};
  for (const [name, page] of Object.entries(pages)) origins[name] = await page.evaluate(() => window.location.origin);
  for (const page of Object.values(pages)) await page.context().close();
  const version = browser.version();
  await browser.close();
  done({ ok: true, browser: version, origins, steps, network, console: consoleLines });
} catch (err) {
  done({ ok: false, error: redact(err?.stack ?? err) });
}
