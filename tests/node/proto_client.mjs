// A client built only from proto/tradews/v1/tradews.proto, with protobufjs: log in, subscribe to
// a book and to private order updates, place a market order, and wait for its acknowledgement
// and its fill. Prints one JSON line per message it receives (protobufjs's toObject form) and
// exits 0 once it has both, 2 on a timeout.
//
//   node tests/node/proto_client.mjs ws://127.0.0.1:8765 API_KEY API_SECRET
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import WebSocket from 'ws';

const [url, apiKey, apiSecret] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = await protobuf.load(path.join(here, '..', '..', 'proto', 'tradews', 'v1', 'tradews.proto'));
const ClientMessage = root.lookupType('tradews.v1.ClientMessage');
const ServerMessage = root.lookupType('tradews.v1.ServerMessage');
const Side = root.lookupEnum('tradews.v1.Side').values;
const OrderType = root.lookupEnum('tradews.v1.OrderType').values;

const ws = new WebSocket(url, 'tradews.v1.proto');
ws.binaryType = 'nodebuffer';
const timer = setTimeout(() => { console.error('timed out'); process.exit(2); }, 10000);

function send(requestId, payload) {
  const message = ClientMessage.create({ requestId, ...payload });
  ws.send(ClientMessage.encode(message).finish());
}

let acked = false;
let filled = false;
ws.on('open', () => {
  if (ws.protocol !== 'tradews.v1.proto') { console.error(`protocol ${ws.protocol}`); process.exit(1); }
  send(1, { login: { apiKey, apiSecret } });
  send(2, { subscribe: { channel: 'book.BTC_USD' } });
  send(3, { subscribe: { channel: 'orders' } });
  send(4, { order: { symbol: 'BTC_USD', side: Side.SIDE_BUY, type: OrderType.ORDER_TYPE_MARKET,
                     quantity: '0.0100', clientOrderId: `node-${Date.now()}` } });
});

ws.on('message', (data) => {
  const message = ServerMessage.toObject(ServerMessage.decode(data), { longs: Number, enums: String });
  console.log(JSON.stringify(message));
  if (message.requestId === 4 && message.orderResponse?.order) acked = true;
  if (message.orderResponse?.fill && message.orderResponse.fill.symbol === 'BTC_USD') filled = true;
  if (acked && filled) { clearTimeout(timer); ws.close(1000); }
});
ws.on('close', () => process.exit(acked && filled ? 0 : 1));
ws.on('error', (err) => { console.error(err.message); process.exit(1); });
