// Lean parsers for the comparison rows: they give the answer a threshold scan gives (socket
// count, queue sums, offenders above a threshold) and build nothing more. They work on the bytes
// (a Buffer and a length): no string for the whole output, no split, no regex, numbers converted
// in place; only offenders become strings.

const SPACE = 32;
const NEWLINE = 10;

/** Start of field `n` (0-based) in [i, end), fields separated by spaces; -1 if there is none. */
function fieldStart(b, i, end, n) {
  for (let f = 0; ; f++) {
    while (i < end && b[i] === SPACE) i++;
    if (i >= end) return -1;
    if (f === n) return i;
    while (i < end && b[i] !== SPACE) i++;
  }
}

function fieldEnd(b, i, end) {
  while (i < end && b[i] !== SPACE) i++;
  return i;
}

function decimalAt(b, i) {
  let v = 0;
  for (let c = b[i]; c >= 48 && c <= 57; c = b[++i]) v = v * 10 + (c - 48);
  return v;
}

function hexAt(b, i, len) {
  let v = 0;
  for (let k = 0; k < len; k++) {
    const c = b[i + k];
    v = v * 16 + (c <= 57 ? c - 48 : (c | 32) - 87);
  }
  return v;
}

function lineEnd(b, start, len) {
  const e = b.indexOf(NEWLINE, start);
  return e < 0 || e > len ? len : e;
}

export function emptyCounts() {
  return { sockets: 0, recvQ: 0, sendQ: 0, offenders: [] };
}

/** `ss -tuan` output: Netid State Recv-Q Send-Q Local:Port Peer:Port. */
export function parseSs(b, threshold, out = emptyCounts()) {
  const len = b.length;
  let start = lineEnd(b, 0, len) + 1; // header
  while (start < len) {
    const end = lineEnd(b, start, len);
    const rqAt = fieldStart(b, start, end, 2);
    if (rqAt >= 0) {
      const rq = decimalAt(b, rqAt);
      const sqAt = fieldStart(b, fieldEnd(b, rqAt, end), end, 0);
      const sq = decimalAt(b, sqAt);
      out.sockets++;
      out.recvQ += rq;
      out.sendQ += sq;
      if (rq > threshold || sq > threshold) {
        const localAt = fieldStart(b, fieldEnd(b, sqAt, end), end, 0);
        const localEnd = fieldEnd(b, localAt, end);
        const peerAt = fieldStart(b, localEnd, end, 0);
        out.offenders.push({
          local: b.toString('latin1', localAt, localEnd),
          peer: b.toString('latin1', peerAt, fieldEnd(b, peerAt, end)),
          rq,
          sq,
        });
      }
    }
    start = end + 1;
  }
  return out;
}

/** "0100007F:0050" (v4) or 32 hex digits (v6) → "127.0.0.1:80" / "[hex]:80" (offenders only). */
function procEndpoint(b, at, end) {
  const field = b.toString('latin1', at, end);
  const colon = field.indexOf(':');
  const port = parseInt(field.slice(colon + 1), 16);
  const hex = field.slice(0, colon);
  if (hex.length === 8) {
    const n = parseInt(hex, 16);
    return `${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${n >>> 24}:${port}`;
  }
  return `[${hex}]:${port}`;
}

/** One /proc/net/{tcp,tcp6,udp,udp6} file (first `len` bytes of `b`): sl local rem st tx:rx … */
export function parseProcNet(b, len, threshold, out = emptyCounts()) {
  let start = lineEnd(b, 0, len) + 1; // header
  while (start < len) {
    const end = lineEnd(b, start, len);
    const localAt = fieldStart(b, start, end, 1);
    if (localAt >= 0) {
      const localEnd = fieldEnd(b, localAt, end);
      const remAt = fieldStart(b, localEnd, end, 0);
      const remEnd = fieldEnd(b, remAt, end);
      const stAt = fieldStart(b, remEnd, end, 0);
      const qAt = fieldStart(b, fieldEnd(b, stAt, end), end, 0);
      const tx = hexAt(b, qAt, 8);
      const rx = hexAt(b, qAt + 9, 8);
      out.sockets++;
      out.recvQ += rx;
      out.sendQ += tx;
      if (rx > threshold || tx > threshold) {
        out.offenders.push({
          local: procEndpoint(b, localAt, localEnd),
          peer: procEndpoint(b, remAt, remEnd),
          state: hexAt(b, stAt, 2),
          rq: rx,
          sq: tx,
        });
      }
    }
    start = end + 1;
  }
  return out;
}

/** `uniq -c` output → number of distinct keys and the sum of their counts. */
export function parseUniqCounts(text) {
  let keys = 0;
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s/.exec(line);
    if (!m) continue;
    keys++;
    total += Number(m[1]);
  }
  return { keys, total };
}
