// The tradews browser console: every panel is a client of the public JSON-RPC API
// (docs/protocol.md), over a WebSocket to the server that served this page.

import { Book, OutOfSync } from "./book.js";
import { Connection, RpcError } from "./rpc.js";

const LOG_LIMIT = 400;
const TAPE_LIMIT = 30;
const FILL_LIMIT = 20;
const LADDER_DEPTH = 10;
const BOOK_DEPTH = 25;
const MAX_RETRY_MS = 10000;

const $ = (id) => document.getElementById(id);

const state = {
  conn: null,
  creds: null, // {apiKey, apiSecret}: in this tab's memory only
  online: false, // logged in on the current connection
  keepOnline: false, // reconnect when the connection drops
  retries: 0,
  retryTimer: null,
  clockOffset: 0, // server clock minus this browser's, in ms
  instruments: new Map(),
  quotes: new Map(), // symbol -> last quote
  book: null,
  bookSymbol: null,
  resyncs: 0,
  orders: new Map(),
  logPaused: false,
  logSkipped: 0,
};

// ---- status, errors, log -------------------------------------------------------------------

function setStatus(name, text) {
  const status = $("status");
  status.dataset.state = name;
  status.textContent = text ?? name.replace("-", " ");
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function describe(error) {
  return error instanceof RpcError ? error.describe() : error.message;
}

function log(direction, text) {
  if (state.logPaused) {
    state.logSkipped += 1;
    $("log-skipped").textContent = `paused: ${state.logSkipped} messages not shown`;
    return;
  }
  const list = $("log");
  const item = document.createElement("li");
  item.className = direction;
  const time = document.createElement("time");
  time.textContent = new Date().toISOString().slice(11, 23);
  item.append(time, text);
  list.append(item);
  while (list.childElementCount > LOG_LIMIT) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

// ---- small DOM helpers ---------------------------------------------------------------------

function cells(row, values) {
  while (row.cells.length < values.length) row.insertCell();
  values.forEach((value, i) => {
    const text = value ?? "-";
    if (row.cells[i].textContent !== text) row.cells[i].textContent = text;
  });
}

function rowFor(tbody, key, attribute) {
  let row = tbody.querySelector(`tr[${attribute}="${CSS.escape(key)}"]`);
  if (!row) {
    row = tbody.insertRow();
    row.setAttribute(attribute, key);
  }
  return row;
}

function option(select, value) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = value;
  select.append(item);
}

function prepend(tbody, values, className, limit) {
  const row = tbody.insertRow(0);
  if (className) row.className = className;
  cells(row, values);
  while (tbody.rows.length > limit) tbody.deleteRow(-1);
  return row;
}

const clock = (ms) => new Date(ms).toISOString().slice(11, 19);

// ---- connection, login, reconnect ----------------------------------------------------------

function socketUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
}

async function connect() {
  clearTimeout(state.retryTimer);
  setStatus(state.retries ? "reconnecting" : "connecting");
  const conn = new Connection(socketUrl(), { onNotification, onClose, onLog: log });
  state.conn = conn;
  try {
    await conn.open();
    await logIn(conn, state.creds);
  } catch (error) {
    if (error instanceof RpcError) {
      // Refused: the key or secret is wrong, revoked, expired... Do not try again with it.
      state.keepOnline = false;
      loggedOut(`Login refused: ${error.message} (${error.code})`);
      conn.close();
    } else if (!state.keepOnline) {
      showError(`Cannot reach the server: ${error.message}`);
    }
    return;
  }
  state.online = true;
  state.keepOnline = true;
  state.retries = 0;
  clearError();
  setStatus("logged-in", `logged in as ${state.creds.apiKey}`);
  $("login").hidden = true;
  $("desk").hidden = false;
  $("logout").hidden = false;
  try {
    await subscribeAll();
  } catch (error) {
    showError(describe(error));
  }
}

// Signed login (docs/protocol.md, rpc.login): the secret never crosses the wire. WebCrypto is
// there only in a secure context (https://, or http:// on this machine); elsewhere, and for a
// key the server cannot check a signature of, the secret is sent as a plain login.
const PLAIN_ONLY = new Set(["SIGNED_LOGIN_UNSUPPORTED", "KEY_FILE_UNAVAILABLE"]);

async function logIn(conn, creds) {
  await syncClock(conn);
  if (!globalThis.crypto || !crypto.subtle) return conn.call("rpc.login", creds);
  for (let attempt = 0; ; attempt++) {
    try {
      return await conn.call("rpc.login", await signedLogin(creds));
    } catch (error) {
      if (!(error instanceof RpcError)) throw error;
      if (error.code === 1010 && attempt === 0 && error.data && error.data.serverTime) {
        state.clockOffset = error.data.serverTime - Date.now();
        continue;
      }
      if (error.code === 1002 && error.data && PLAIN_ONLY.has(error.data.reason)) {
        return conn.call("rpc.login", creds);
      }
      throw error;
    }
  }
}

async function signedLogin({ apiKey, apiSecret }) {
  const timestamp = Date.now() + state.clockOffset;
  const random = crypto.getRandomValues(new Uint8Array(16));
  const nonce = btoa(String.fromCharCode(...random))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replaceAll("=", "");
  const text = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    text.encode(apiSecret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const message = `tradews-login-v1\n${apiKey}\n${timestamp}\n${nonce}`;
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, text.encode(message)));
  const hex = [...signature].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return { apiKey, timestamp, nonce, signature: hex };
}

// The server's clock minus this browser's, from `time` (no login needed): for quote countdowns
// and signed logins' timestamps.
async function syncClock(conn) {
  const sent = Date.now();
  const { time } = await conn.call("time");
  state.clockOffset = time - Math.round((sent + Date.now()) / 2);
}

// Close reasons (code 1008) after which the same key cannot log in again (docs/protocol.md).
const FINAL = /api key revoked|api key expired|too many failed logins/;

function onClose(code, reason, opened) {
  const wasOnline = state.online;
  state.online = false;
  for (const card of $("quotes").children) card.dataset.expired = "true";
  if (wasOnline) {
    $("book").dataset.synced = "false";
    $("book-status").textContent = "not live: the book resynchronises when connected again";
  }
  if (state.keepOnline && state.creds) {
    if (code === 1008 && FINAL.test(reason)) {
      // The server ended the session for good: logging in again with this key cannot work.
      state.keepOnline = false;
      loggedOut(`The server closed the session: ${reason || "policy violation"}`);
      return;
    }
    const wait = Math.min(1000 * 2 ** state.retries, MAX_RETRY_MS);
    state.retries += 1;
    const why = opened ? `closed${reason ? `: ${reason}` : ` (${code})`}` : "server unreachable";
    setStatus("reconnecting", `reconnecting in ${wait / 1000} s (${why})`);
    state.retryTimer = setTimeout(connect, wait);
  } else if (wasOnline) {
    loggedOut(code === 1000 ? null : `Disconnected: ${reason || `close code ${code}`}`);
  } else if ($("status").dataset.state !== "logged-out") {
    setStatus("disconnected");
  }
}

function loggedOut(message) {
  state.creds = null;
  setStatus("logged-out");
  $("login").hidden = false;
  $("logout").hidden = true;
  $("desk").hidden = true;
  if (message) showError(message);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  clearError();
  state.creds = { apiKey: $("api-key").value.trim(), apiSecret: $("api-secret").value.trim() };
  $("api-secret").value = "";
  state.retries = 0;
  connect();
});

$("logout").addEventListener("click", async () => {
  state.keepOnline = false;
  clearTimeout(state.retryTimer);
  try {
    await state.conn.call("rpc.logout");
  } catch (error) {
    state.conn.close();
  }
  loggedOut(null);
});

// ---- what a logged-in session follows ------------------------------------------------------

async function subscribeAll() {
  const conn = state.conn;
  const instruments = await conn.call("instruments");
  const first = state.instruments.size === 0;
  for (const instrument of instruments) state.instruments.set(instrument.symbol, instrument);
  if (first) {
    for (const { symbol } of instruments) {
      option($("book-symbol"), symbol);
      option($("order-symbol"), symbol);
      quoteCard(symbol);
    }
  }
  // Private streams first, then the state they change, so that no update falls in between.
  await conn.call("subscribe", { channel: "orders" });
  await conn.call("subscribe", { channel: "balances" });
  const open = await conn.call("orders_open");
  state.orders.clear(); // what changed while disconnected: start from the open orders now
  $("order-rows").replaceChildren();
  for (const order of open) showOrder(order);
  for (const { symbol } of instruments) {
    await conn.call("subscribe", { channel: `ticker.${symbol}` });
    requestQuotes(symbol);
  }
  await followBook($("book-symbol").value);
}

async function requestQuotes(symbol) {
  const card = $(`quote-${symbol}`);
  try {
    await state.conn.call("quote_request", { symbol, type: "RFQ" });
    card.querySelector(".note").textContent = "";
  } catch (error) {
    card.querySelector(".note").textContent = describe(error);
  }
}

async function followBook(symbol) {
  const conn = state.conn;
  const previous = state.bookSymbol;
  state.book = null;
  state.bookSymbol = symbol;
  $("ladder").replaceChildren();
  $("tape-rows").replaceChildren();
  $("book").dataset.synced = "false";
  if (previous && previous !== symbol && state.online) {
    await conn.call("unsubscribe", { channel: `book.${previous}` }).catch(() => {});
    await conn.call("unsubscribe", { channel: `trades.${previous}` }).catch(() => {});
  }
  const { tick, lot } = state.instruments.get(symbol);
  state.book = new Book(symbol, tick, lot);
  await conn.call("subscribe", { channel: `book.${symbol}`, depth: BOOK_DEPTH });
  await conn.call("subscribe", { channel: `trades.${symbol}` });
}

// A gap or a checksum mismatch: start again from a fresh snapshot.
async function resync(reason) {
  const symbol = state.bookSymbol;
  state.resyncs += 1;
  $("book").dataset.synced = "false";
  $("book").dataset.resyncs = String(state.resyncs);
  $("book-status").textContent = `resynchronising (${reason})`;
  const { tick, lot } = state.instruments.get(symbol);
  state.book = new Book(symbol, tick, lot);
  try {
    await state.conn.call("unsubscribe", { channel: `book.${symbol}` });
    await state.conn.call("subscribe", { channel: `book.${symbol}`, depth: BOOK_DEPTH });
  } catch (error) {
    showError(describe(error));
  }
}

$("book-symbol").addEventListener("change", () => {
  followBook($("book-symbol").value).catch((error) => showError(describe(error)));
});

// ---- notifications -------------------------------------------------------------------------

const handlers = {
  quote: showQuote,
  ticker: showTicker,
  book: onBook,
  trades: onTrade,
  orders: showOrder,
  fills: showFill,
  balances: showBalance,
  warning: (params) => showError(`Server warning: ${params.message}`),
};

function onNotification(method, params) {
  const handler = handlers[method];
  if (handler) handler(params);
}

function onBook(message) {
  const book = state.book;
  if (!book || message.symbol !== book.symbol) return;
  if (book.seq === null && message.type !== "snapshot") return; // before the resubscription
  try {
    book.apply(message);
  } catch (error) {
    if (!(error instanceof OutOfSync)) throw error;
    resync(error.message);
    return;
  }
  renderBook(book);
}

function renderBook(book) {
  const rows = [];
  const asks = book.levels("asks").slice(0, LADDER_DEPTH).reverse();
  const bids = book.levels("bids").slice(0, LADDER_DEPTH);
  for (const level of asks) rows.push(["", level.price, level.quantity, "ask"]);
  for (const level of bids) rows.push([level.quantity, level.price, "", "bid"]);
  const ladder = $("ladder");
  while (ladder.rows.length > rows.length) ladder.deleteRow(-1);
  rows.forEach(([bid, price, ask, side], i) => {
    const row = ladder.rows[i] ?? ladder.insertRow();
    cells(row, [bid, price, ask]);
    row.className = side + (side === "ask" && i === asks.length - 1 ? " spread" : "");
    row.cells[1].className = "price";
  });
  const view = $("book");
  view.dataset.seq = String(book.seq);
  view.dataset.checksum = String(book.checksum);
  view.dataset.synced = "true";
  $("book-status").textContent = `seq ${book.seq}, checksum ${book.checksum} verified`;
}

function onTrade(trade) {
  if (trade.symbol !== state.bookSymbol) return;
  prepend(
    $("tape-rows"),
    [clock(trade.timestamp), trade.price, trade.quantity, trade.takerSide],
    trade.takerSide,
    TAPE_LIMIT,
  );
}

function showTicker(t) {
  const row = rowFor($("ticker-rows"), t.symbol, "data-symbol");
  const change = t.change24h == null ? null : `${t.change24h} (${t.change24hPct}%)`;
  cells(row, [t.symbol, t.last, t.bid, t.ask, change, t.volume24h]);
}

function showOrder(order) {
  const tbody = $("order-rows");
  const open = order.status === "new" || order.status === "partially_filled";
  const key = String(order.orderId);
  const known = state.orders.get(key);
  if (known && known.seq > order.seq) return; // an older state than the one shown
  if (!open) {
    state.orders.delete(key);
    tbody.querySelector(`tr[data-order-id="${key}"]`)?.remove();
    return;
  }
  state.orders.set(key, order);
  const row = rowFor(tbody, key, "data-order-id");
  row.className = order.side;
  cells(row, [
    key,
    order.symbol,
    order.side,
    order.price,
    order.quantity,
    order.filledQuantity,
    order.status,
  ]);
  if (row.cells.length === 7) row.append(orderActions(key));
}

function orderActions(orderId) {
  const cell = document.createElement("td");
  const price = document.createElement("input");
  price.className = "amend-price";
  price.placeholder = "price";
  const quantity = document.createElement("input");
  quantity.className = "amend-quantity";
  quantity.placeholder = "quantity";
  const amend = document.createElement("button");
  amend.type = "button";
  amend.className = "amend";
  amend.textContent = "Amend";
  amend.addEventListener("click", () => {
    const params = { orderId: Number(orderId) };
    if (price.value.trim()) params.price = price.value.trim();
    if (quantity.value.trim()) params.quantity = quantity.value.trim();
    act("order_amend", params, (o) => `Order ${o.orderId} amended: ${o.quantity} @ ${o.price}`);
  });
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "cancel";
  cancel.textContent = "Cancel";
  cancel.addEventListener("click", () => {
    act("order_cancel", { orderId: Number(orderId) }, (o) => `Order ${o.orderId} ${o.status}`);
  });
  cell.append(price, quantity, amend, cancel);
  return cell;
}

function showFill(fill) {
  prepend(
    $("fill-rows"),
    [String(fill.tradeId), fill.symbol, fill.side, fill.price, fill.quantity, fill.liquidity],
    fill.side,
    FILL_LIMIT,
  );
}

function showBalance(balance) {
  const row = rowFor($("balance-rows"), balance.asset, "data-asset");
  cells(row, [balance.asset, balance.available, balance.locked]);
}

// ---- RFQ panels ----------------------------------------------------------------------------

function quoteCard(symbol) {
  const card = document.createElement("div");
  card.className = "quote";
  card.id = `quote-${symbol}`;
  card.dataset.symbol = symbol;
  card.dataset.expired = "true";
  const title = document.createElement("h3");
  const name = document.createElement("span");
  name.textContent = symbol;
  const countdown = document.createElement("span");
  countdown.className = "countdown muted";
  title.append(name, countdown);
  const size = document.createElement("div");
  size.className = "size muted";
  const prices = document.createElement("div");
  prices.className = "prices";
  const sell = document.createElement("button");
  sell.type = "button";
  sell.className = "sell";
  sell.disabled = true;
  const buy = document.createElement("button");
  buy.type = "button";
  buy.className = "buy";
  buy.disabled = true;
  prices.append(sell, buy);
  const note = document.createElement("div");
  note.className = "note muted";
  card.append(title, size, prices, note);
  sell.addEventListener("click", () => accept(symbol, "sell"));
  buy.addEventListener("click", () => accept(symbol, "buy"));
  $("quotes").append(card);
}

function showQuote(quote) {
  state.quotes.set(quote.symbol, quote);
  const card = $(`quote-${quote.symbol}`);
  if (!card) return;
  card.dataset.quoteId = quote.quoteId;
  card.dataset.seq = String(quote.seq);
  card.querySelector(".size").textContent = `${quote.quantity} ${quote.symbol}, seq ${quote.seq}`;
  card.querySelector("button.sell").textContent = `Sell ${quote.buyPrice}`;
  card.querySelector("button.buy").textContent = `Buy ${quote.sellPrice}`;
  tickQuote(card, quote);
}

function tickQuote(card, quote) {
  const left = quote.validUntil - (Date.now() + state.clockOffset);
  const expired = left <= 0 || !state.online;
  card.dataset.expired = String(expired);
  card.querySelector(".countdown").textContent = expired ? "expired" : `${(left / 1000).toFixed(1)} s`;
  for (const button of card.querySelectorAll("button")) button.disabled = expired;
}

setInterval(() => {
  for (const [symbol, quote] of state.quotes) {
    const card = $(`quote-${symbol}`);
    if (card) tickQuote(card, quote);
  }
}, 100);

function accept(symbol, side) {
  const quote = state.quotes.get(symbol);
  if (!quote) return;
  act("quote_accept", { quoteId: quote.quoteId, side }, (fill) => {
    const verb = fill.side === "buy" ? "Bought" : "Sold";
    return `${verb} ${fill.quantity} ${fill.symbol} at ${fill.price} (trade ${fill.tradeId})`;
  }, "rfq-result");
}

// ---- commands ------------------------------------------------------------------------------

// Send a command; show its result in `target` (one line), or the server's error.
async function act(method, params, summary, target = "ticket-result") {
  clearError();
  try {
    const result = await state.conn.call(method, params);
    $(target).textContent = summary(result);
  } catch (error) {
    $(target).textContent = "";
    showError(describe(error));
  }
}

$("order-type").addEventListener("change", () => {
  const market = $("order-type").value === "market";
  $("order-price").disabled = market;
  if (market && $("order-tif").value === "GTC") $("order-tif").value = "IOC";
});

$("order-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = {
    symbol: $("order-symbol").value,
    side: $("order-side").value,
    type: $("order-type").value,
    quantity: $("order-quantity").value.trim(),
    timeInForce: $("order-tif").value,
    postOnly: $("order-post-only").checked,
  };
  if (params.type === "limit") params.price = $("order-price").value.trim();
  act("order_place", params, (o) => {
    const price = o.price ?? "market";
    return `Order ${o.orderId} ${o.status}: ${o.side} ${o.quantity} ${o.symbol} @ ${price}`;
  });
});

$("log-pause").addEventListener("change", () => {
  state.logPaused = $("log-pause").checked;
  if (!state.logPaused) {
    state.logSkipped = 0;
    $("log-skipped").textContent = "";
  }
});

$("log-clear").addEventListener("click", () => $("log").replaceChildren());
