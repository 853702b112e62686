// Alert receiver for the queue-watch benchmarks: an HTTP server on 127.0.0.1 that answers every
// GET with 200 and counts what arrives (requests, distinct alert ids, duplicates).
//
//   node bench/receiver.mjs '{"expect": 10000}'
//
// Prints `READY {"port":…}` once listening. When `expect` distinct ids have arrived it notes the
// time (epoch ms, comparable with other processes' performance.timeOrigin + performance.now()).
// On SIGTERM/SIGINT, or when stdin closes (the parent died), prints `STATS {json}` and exits.
import http from 'node:http';

const spec = JSON.parse(process.argv[2] ?? '{}');
const expect = Number.isInteger(spec.expect) && spec.expect > 0 ? spec.expect : undefined;

const ids = new Set();
const stats = {
  requests: 0,
  distinct: 0,
  duplicates: 0,
  withoutId: 0,
  firstAt: null,
  lastAt: null,
  expect: expect ?? null,
  expectReachedAt: null,
};
const epochNow = () => performance.timeOrigin + performance.now();

/** The `id` query parameter, without building a URL object per request. */
function alertId(url) {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  for (const part of url.slice(q + 1).split('&')) {
    if (part.startsWith('id=')) return decodeURIComponent(part.slice(3));
  }
  return undefined;
}

const server = http.createServer({ keepAlive: true }, (req, res) => {
  const now = epochNow();
  stats.requests++;
  stats.firstAt ??= now;
  stats.lastAt = now;
  const id = alertId(req.url ?? '');
  if (id === undefined) stats.withoutId++;
  else if (ids.has(id)) stats.duplicates++;
  else {
    ids.add(id);
    stats.distinct++;
    if (expect !== undefined && stats.distinct === expect) stats.expectReachedAt = now;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
  res.end('ok');
});

let done = false;
function finish() {
  if (done) return;
  done = true;
  process.stdout.write(`STATS ${JSON.stringify(stats)}\n`, () => {
    server.closeAllConnections();
    server.close();
    process.exit(0);
  });
}

process.on('SIGTERM', finish);
process.on('SIGINT', finish);
process.stdin.on('end', finish);
process.stdin.on('error', finish);
process.stdin.resume();

server.listen({ host: '127.0.0.1', port: 0, backlog: 511 }, () => {
  process.stdout.write(`READY ${JSON.stringify({ port: server.address().port, pid: process.pid })}\n`);
});
