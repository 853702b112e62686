// Socket-farm child: listens on one loopback address, opens `connections` connections to itself
// and holds both ends (see farm-plan.mjs for the shape). Server sides are accepted paused, so bytes
// written to an offender's client end stay unread in the server side's receive queue.
//
//   node bench/farm.mjs '<spec json>'
//
// Prints one line `READY {json}` on stdout when every connection is established and the offender
// bytes are queued. Exits, resetting every connection (RST, so no TIME_WAIT is left behind), on
// SIGTERM/SIGINT or when stdin closes (the harness died).
import net from 'node:net';
import { boundSourceAddress, isBound } from './farm-plan.mjs';

const CONNECT_CONCURRENCY = 256;
const BACKLOG = 511;

const spec = JSON.parse(process.argv[2] ?? 'null');
if (!spec || typeof spec !== 'object') {
  process.stderr.write('farm: expected a JSON spec as the first argument\n');
  process.exit(2);
}

const servers = [];
const accepted = [];
const clients = [];
let acceptedWaiters = [];

function noop() {}

function listen(host, port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ pauseOnConnect: true }, (socket) => {
      socket.on('error', noop);
      accepted.push(socket);
      if (accepted.length >= spec.connections) {
        for (const w of acceptedWaiters) w();
        acceptedWaiters = [];
      }
    });
    server.once('error', reject);
    server.listen({ host, port, backlog: BACKLOG }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function connectOne(i) {
  const port = spec.listenPorts[i % spec.listenPorts.length];
  const opts = { host: spec.listenHost, port, noDelay: true };
  if (isBound(i, spec.boundFraction)) {
    // Index among this child's bound connections → a source address of its own.
    const k = Math.floor(i * spec.boundFraction);
    opts.localAddress = boundSourceAddress(spec.boundStart + k);
    opts.localPort = spec.boundPorts[k % spec.boundPorts.length];
  } else {
    opts.localAddress = spec.ephemeralSource;
  }
  return new Promise((resolve, reject) => {
    const socket = net.connect(opts);
    socket.once('error', (err) =>
      reject(new Error(`connect ${opts.localAddress}:${opts.localPort ?? 0} → ${opts.host}:${port}: ${err.message}`)),
    );
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', noop);
      clients[i] = socket;
      resolve();
    });
  });
}

async function connectAll() {
  let next = 0;
  async function worker() {
    while (next < spec.connections) await connectOne(next++);
  }
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, spec.connections) }, worker));
  if (accepted.length < spec.connections) await new Promise((resolve) => acceptedWaiters.push(resolve));
}

/** Offenders: evenly spaced connections; the bytes wait unread in the paused server side. */
async function queueOffenderBytes() {
  const payload = Buffer.alloc(spec.offenderBytes, 0x78);
  const picked = [];
  for (let j = 0; j < spec.offenders; j++) picked.push(Math.floor(((j + 0.5) * spec.connections) / spec.offenders));
  await Promise.all(
    picked.map((i) => new Promise((resolve, reject) => clients[i].write(payload, (err) => (err ? reject(err) : resolve())))),
  );
  return picked;
}

function sampleConnection() {
  // An outbound (ephemeral) client end and its server side: the exact-lookup target.
  const i = clients.findIndex((_, j) => !isBound(j, spec.boundFraction));
  const c = clients[i];
  return {
    client: { local: `${c.localAddress}:${c.localPort}`, remote: `${c.remoteAddress}:${c.remotePort}` },
    server: { local: `${c.remoteAddress}:${c.remotePort}`, remote: `${c.localAddress}:${c.localPort}` },
  };
}

let stopping = false;
function stop(code) {
  if (stopping) return;
  stopping = true;
  for (const s of clients) s?.resetAndDestroy();
  for (const s of accepted) s.resetAndDestroy();
  for (const s of servers) s.close();
  // Give the resets one turn of the loop to reach the kernel.
  setImmediate(() => process.exit(code));
}

process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
process.stdin.on('end', () => stop(0));
process.stdin.on('error', () => stop(0));
process.stdin.resume();

try {
  const started = performance.now();
  for (const port of spec.listenPorts) servers.push(await listen(spec.listenHost, port));
  await connectAll();
  const offenders = await queueOffenderBytes();
  const info = {
    index: spec.index,
    pid: process.pid,
    connections: clients.length,
    accepted: accepted.length,
    listeners: servers.length,
    sockets: clients.length + accepted.length + servers.length,
    offenders: offenders.length,
    sample: sampleConnection(),
    setupMs: Math.round(performance.now() - started),
  };
  process.stdout.write(`READY ${JSON.stringify(info)}\n`);
} catch (err) {
  process.stderr.write(`farm ${spec.index}: ${err.message}\n`);
  stop(1);
}
