// `sockwatch list`: an ss-like listing straight from sock_diag.
import { endpoints, Sampler, type SocketRecord } from '../sampler';
import { parse, sizeFlag } from './args';
import { FILTER_HELP, FILTER_OPTIONS, filterOptions, resolveNetns } from './filters';
import { UsageError } from './errors';

export const LIST_HELP = `Usage: sockwatch list [options]

List TCP and UDP sockets (IPv4 and IPv6, every state) from the kernel's sock_diag, like ss -tuan.

${FILTER_HELP}
Queues:
  --min-recv BYTES       only sockets whose receive queue is at least BYTES
  --min-send BYTES       only sockets whose send queue is at least BYTES (either one matches)
  -m, --skmem            add socket memory (rcvbuf, sndbuf, drops…) from SKMEMINFO
Output:
  --format table|json    a table (default) or one JSON object per line
  -h, --help             this help

Recv-Q / Send-Q mean: TCP unread / unacknowledged bytes; LISTEN accept queue / backlog limit
(connections); UDP kernel memory (truesize) of the receive / transmit queues.`;

function jsonLine(r: SocketRecord): string {
  const { local, remote } = endpoints(r);
  const o: Record<string, unknown> = {
    proto: r.protocol,
    family: r.family === 6 ? 'ipv6' : 'ipv4',
    state: r.stateName,
    local,
    remote,
    recvQ: r.recvQ,
    sendQ: r.sendQ,
    uid: r.uid,
    inode: r.inode,
    cookie: r.cookie.toString(),
  };
  if (r.skmem) o.skmem = r.skmem;
  return JSON.stringify(o);
}

function table(records: SocketRecord[], skmem: boolean): string {
  const head = ['Netid', 'State', 'Recv-Q', 'Send-Q', 'Local Address:Port', 'Peer Address:Port', 'Uid', 'Inode'];
  if (skmem) head.push('Skmem');
  const rows = records.map((r) => {
    const { local, remote } = endpoints(r);
    const row = [r.protocol, r.stateName.toUpperCase(), String(r.recvQ), String(r.sendQ), local, remote, String(r.uid), String(r.inode)];
    if (skmem && r.skmem)
      row.push(
        `r${r.skmem.rmemAlloc},rb${r.skmem.rcvbuf},t${r.skmem.wmemAlloc},tb${r.skmem.sndbuf},w${r.skmem.wmemQueued},d${r.skmem.drops}`,
      );
    return row;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (row: string[]) =>
    row
      .map((c, i) => (i === 2 || i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

export async function runList(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parse(argv, {
    ...FILTER_OPTIONS,
    'min-recv': { type: 'string' },
    'min-send': { type: 'string' },
    skmem: { type: 'boolean', short: 'm' },
    format: { type: 'string', default: 'table' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out.write(LIST_HELP + '\n');
    return 0;
  }
  const format = values.format as string;
  if (format !== 'table' && format !== 'json') throw new UsageError(`--format: expected table or json, got "${format}"`);
  const minRecv = sizeFlag('--min-recv', values['min-recv']);
  const minSend = sizeFlag('--min-send', values['min-send']);
  const filter = filterOptions(values);
  const netns = resolveNetns(values.netns);
  const sampler = new Sampler({ netns });
  try {
    const thresholds = minRecv !== undefined || minSend !== undefined;
    const r = await sampler.sample({
      ...filter,
      skmem: values.skmem === true,
      all: !thresholds,
      // "at least N" is "strictly greater than N-1"; 0 means every socket.
      recvThreshold: minRecv === undefined ? 'off' : Math.max(minRecv - 1, 0),
      sendThreshold: minSend === undefined ? 'off' : Math.max(minSend - 1, 0),
      maxRecords: 0xffffffff,
    });
    let records = r.records;
    if ((minRecv === 0 || minSend === 0) && thresholds) {
      // A threshold of "at least 0" matches everything: list all.
      records = (await sampler.sample({ ...filter, skmem: values.skmem === true, all: true, maxRecords: 0xffffffff })).records;
    }
    records.sort(
      (a, b) => a.protocol.localeCompare(b.protocol) || a.family - b.family || a.localPort - b.localPort || a.remotePort - b.remotePort,
    );
    if (format === 'json') {
      for (const rec of records) out.write(jsonLine(rec) + '\n');
    } else {
      out.write(table(records, values.skmem === true) + '\n');
    }
    if (r.udpFromProc) process.stderr.write('sockwatch: the kernel has no udp_diag; UDP sockets were read from /proc/net/udp{,6}\n');
    return 0;
  } finally {
    await sampler.close();
  }
}
