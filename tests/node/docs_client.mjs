// A client written only from the published API document: log in, then ask for BTC_USD quotes
// right away without waiting for the login reply. Prints every message it receives, one JSON
// document a line, and exits after the given number of quote notifications (or 10 s).
//
//   node tests/node/docs_client.mjs ws://127.0.0.1:8765 API_KEY API_SECRET [QUOTES]
import WebSocket from 'ws';

const [url, apiKey, apiSecret, wanted = '5'] = process.argv.slice(2);
const ws = new WebSocket(url);
let id = 1;
let quotes = 0;

const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 10000);

ws.on('open', () => {
  ws.send(JSON.stringify({ method: 'rpc.login', params: { apiKey, apiSecret }, jsonrpc: '2.0', id }));
  id += 1;
  ws.send(JSON.stringify({
    method: 'quote_request',
    params: { symbol: 'BTC_USD', type: 'RFQ' },
    jsonrpc: '2.0',
    id,
  }));
});

ws.on('message', (data) => {
  const text = data.toString();
  console.log(text);
  const message = JSON.parse(text);
  if (message.method === 'quote') {
    quotes += 1;
    if (quotes >= Number(wanted)) {
      clearTimeout(timer);
      ws.close(1000);
    }
  }
});

ws.on('close', () => process.exit(0));
ws.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
