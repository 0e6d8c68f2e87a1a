#!/usr/bin/env node
// A quote broadcast server on Node.js `ws`: the reference point of bench/quote_fanout.py.
//
// The same job as bench/bare_picows_server.py: every tick, build one `quote` notification per
// symbol (BTC_USD, ETH_USD, SOL_USD: the shape and size tradews sends, with a fresh `timestamp`)
// into one Buffer and send it as a text frame to every client subscribed to that symbol, one
// `ws.send` per quote, as the `ws` README's broadcast example does. A client whose
// `bufferedAmount` is over 64 KiB (the asyncio/uvloop transport high-water mark) is skipped for
// that tick, as tradews skips a paused transport.
//
// Any request gets a JSON-RPC result: `rpc.login` -> true, `quote_request` subscribes to its
// symbol.
//
//   node bench/node_ws_server.js --port 0 --tick-interval 0.01
//
// prints `listening on ws://127.0.0.1:PORT` once it accepts connections; SIGTERM stops it.
'use strict';

const { WebSocketServer } = require('ws');

const HIGH_WATER = 64 * 1024;

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 0, tickInterval: 0.1 };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (name === '--host') opts.host = value;
    else if (name === '--port') opts.port = Number(value);
    else if (name === '--tick-interval') opts.tickInterval = Number(value);
    else throw new Error(`unknown option ${name}`);
  }
  return opts;
}

// What each demo stream of tradews looks like: start price, price decimals, quote size, spread.
const SYMBOLS = {
  BTC_USD: [65000, 2, '1.0000', 5],
  ETH_USD: [3200, 2, '10.000', 6],
  SOL_USD: [150, 3, '100.00', 8],
};

// A seeded random walk priced like the tradews demo stream of `symbol` (tick, size, spread).
class Feed {
  constructor(symbol = 'BTC_USD', subscription = 'q1', seed = 1, volatility = 0.02) {
    const [start, decimals, quantity, spreadBps] = SYMBOLS[symbol];
    this.symbol = symbol;
    this.subscription = subscription;
    this.decimals = decimals;
    this.quantity = quantity;
    this.spreadBps = spreadBps;
    this.state = seed >>> 0;
    this.price = start;
    this.sigma = volatility / Math.sqrt(3600);
    this.seq = 0;
    this.prefix = this.nextUint32().toString(16).padStart(8, '0');
  }

  nextUint32() {
    // mulberry32
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  gauss() {
    const u = (this.nextUint32() + 1) / 4294967297;
    const v = this.nextUint32() / 4294967296;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  nextQuote(nowMs, dt) {
    this.price *= Math.exp(this.sigma * Math.sqrt(dt) * this.gauss());
    const half = (this.price * this.spreadBps) / 10000;
    const scale = 10 ** this.decimals;
    this.seq += 1;
    const message = {
      jsonrpc: '2.0',
      method: 'quote',
      params: {
        subscription: this.subscription,
        symbol: this.symbol,
        buyPrice: (Math.floor((this.price - half) * scale) / scale).toFixed(this.decimals),
        sellPrice: (Math.ceil((this.price + half) * scale) / scale).toFixed(this.decimals),
        quantity: this.quantity,
        quoteId: `${this.prefix}-${this.seq.toString(16)}`,
        validUntil: nowMs + 3000,
        seq: this.seq,
        timestamp: nowMs,
      },
    };
    return Buffer.from(JSON.stringify(message));
  }
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const names = Object.keys(SYMBOLS);
  const subscribers = new Map(names.map((symbol) => [symbol, new Set()]));
  const feeds = names.map((symbol, i) => new Feed(symbol, `q${i + 1}`, i + 1));
  const wss = new WebSocketServer({ host: opts.host, port: opts.port, perMessageDeflate: false });

  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const request = JSON.parse(data.toString());
      let result = true;
      if (request.method === 'quote_request') {
        const symbol = (request.params && request.params.symbol) || 'BTC_USD';
        subscribers.get(symbol).add(ws);
        const subscription = `q${names.indexOf(symbol) + 1}`;
        result = { subscription, symbol, quantity: SYMBOLS[symbol][2] };
      }
      ws.send(JSON.stringify({ jsonrpc: '2.0', result, id: request.id ?? null }));
    });
    const forget = () => subscribers.forEach((subs) => subs.delete(ws));
    ws.on('close', forget);
    ws.on('error', forget);
  });

  const intervalMs = opts.tickInterval * 1000;
  let nextAt = performance.now();
  let stopped = false;
  const pulse = () => {
    if (stopped) return;
    const nowMs = Date.now();
    for (const feed of feeds) {
      const subs = subscribers.get(feed.symbol);
      if (subs.size === 0) continue;
      const frame = feed.nextQuote(nowMs, opts.tickInterval);
      for (const ws of subs) {
        if (ws.readyState === ws.OPEN && ws.bufferedAmount <= HIGH_WATER) {
          ws.send(frame, { binary: false });
        }
      }
    }
    // Fixed schedule; if behind, skip missed beats rather than bunching them up.
    nextAt += intervalMs;
    let delay = nextAt - performance.now();
    if (delay < 0) {
      nextAt = performance.now();
      delay = 0;
    }
    // Timers have 1 ms resolution in libuv, as in uvloop, which rounds to the nearest ms; but
    // setTimeout never waits less than 1 ms, so a delay under 0.5 ms only yields to I/O once.
    if (delay >= 0.5) setTimeout(pulse, Math.round(delay));
    else setImmediate(pulse);
  };

  wss.on('listening', () => {
    const { port } = wss.address();
    process.stdout.write(`listening on ws://${opts.host}:${port}\n`);
    setImmediate(pulse);
  });

  const stop = () => {
    stopped = true;
    for (const ws of wss.clients) ws.terminate();
    wss.close(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
