// A depth ladder kept from a book channel's snapshot and deltas, checked the way
// docs/protocol.md describes: every delta's prevSeq must be the seq of the message before it,
// and after every message the CRC-32 of the ten best levels a side, written as
// "ticks:lots" (integers scaled by the instrument's tick and lot), must be the server's.

const CHECKSUM_DEPTH = 10;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

// CRC-32 (as zlib.crc32) of an ASCII string.
export function crc32(text) {
  let c = 0xffffffff;
  for (let i = 0; i < text.length; i++) c = CRC_TABLE[(c ^ text.charCodeAt(i)) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// A decimal string as a whole number of `unit` (a decimal string too), exactly: BigInt.
export function units(value, unit) {
  const [vi, vf = ""] = value.split(".");
  const [ui, uf = ""] = unit.split(".");
  const places = Math.max(vf.length, uf.length);
  const scaled = (whole, fraction) => BigInt(whole + fraction.padEnd(places, "0"));
  return scaled(vi, vf) / scaled(ui, uf);
}

export class OutOfSync extends Error {}

export class Book {
  constructor(symbol, tick, lot) {
    this.symbol = symbol;
    this.tick = tick;
    this.lot = lot;
    this.bids = new Map();
    this.asks = new Map();
    this.seq = null;
    this.checksum = null;
  }

  // Apply one `book` notification; throws OutOfSync on a gap or a checksum mismatch.
  apply(message) {
    if (message.type === "snapshot") {
      this.bids = new Map();
      this.asks = new Map();
    } else if (this.seq === null || message.prevSeq !== this.seq) {
      throw new OutOfSync(`expected prevSeq ${this.seq}, got ${message.prevSeq}`);
    }
    for (const [price, quantity] of message.bids) this.set(this.bids, price, quantity);
    for (const [price, quantity] of message.asks) this.set(this.asks, price, quantity);
    this.seq = message.seq;
    this.checksum = this.compute();
    if (this.checksum !== message.checksum) {
      throw new OutOfSync(`checksum mismatch at seq ${message.seq}`);
    }
  }

  set(side, price, quantity) {
    const ticks = units(price, this.tick);
    const lots = units(quantity, this.lot);
    if (lots === 0n) side.delete(ticks);
    else side.set(ticks, { price, quantity, ticks, lots });
  }

  // Best first: bids highest first, asks lowest first.
  levels(side) {
    const levels = [...(side === "bids" ? this.bids : this.asks).values()];
    const sign = side === "bids" ? -1 : 1;
    return levels.sort((a, b) => (a.ticks < b.ticks ? -sign : a.ticks > b.ticks ? sign : 0));
  }

  compute() {
    const side = (levels) =>
      levels
        .slice(0, CHECKSUM_DEPTH)
        .map((level) => `${level.ticks}:${level.lots}`)
        .join(",");
    return crc32(`${side(this.levels("bids"))}|${side(this.levels("asks"))}`);
  }
}
