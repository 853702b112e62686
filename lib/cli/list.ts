// `sockwatch list`: an ss-like listing straight from sock_diag.
import { NamespaceScanner } from '../netns';
import { endpoints, Sampler, type SampleOptions, type SocketRecord } from '../sampler';
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
Namespaces:
  --all-netns            every network namespace of the host (/proc/*/ns/net and /var/run/netns):
                         a Netns column (table) or "netns" field (JSON) with the namespace's inode;
                         a namespace that cannot be entered is one line on stderr (needs root)
Output:
  --format table|json    a table (default) or one JSON object per line
  -h, --help             this help

Recv-Q / Send-Q mean: TCP unread / unacknowledged bytes; LISTEN accept queue / backlog limit
(connections); UDP kernel memory (truesize) of the receive / transmit queues.`;

/** A record and the inode of its network namespace (only with --all-netns). */
interface Row {
  rec: SocketRecord;
  netns?: number;
}

function jsonLine({ rec: r, netns }: Row): string {
  const { local, remote } = endpoints(r);
  const o: Record<string, unknown> = {
    ...(netns === undefined ? {} : { netns }),
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

function table(records: Row[], skmem: boolean, allNetns: boolean): string {
  const head = ['Netid', 'State', 'Recv-Q', 'Send-Q', 'Local Address:Port', 'Peer Address:Port', 'Uid', 'Inode'];
  if (skmem) head.push('Skmem');
  if (allNetns) head.unshift('Netns');
  // Recv-Q and Send-Q are right-aligned.
  const right = new Set(allNetns ? [3, 4] : [2, 3]);
  const rows = records.map(({ rec: r, netns }) => {
    const { local, remote } = endpoints(r);
    const row = [r.protocol, r.stateName.toUpperCase(), String(r.recvQ), String(r.sendQ), local, remote, String(r.uid), String(r.inode)];
    if (allNetns) row.unshift(String(netns));
    if (skmem && r.skmem)
      row.push(
        `r${r.skmem.rmemAlloc},rb${r.skmem.rcvbuf},t${r.skmem.wmemAlloc},tb${r.skmem.sndbuf},w${r.skmem.wmemQueued},d${r.skmem.drops}`,
      );
    return row;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (row: string[]) =>
    row
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

const byAddress = (a: SocketRecord, b: SocketRecord): number =>
  a.protocol.localeCompare(b.protocol) || a.family - b.family || a.localPort - b.localPort || a.remotePort - b.remotePort;

/**
 * --all-netns: every namespace scanned one after another; rows in scan order (ours first, then by
 * inode). A namespace that cannot be entered or scanned is one line on stderr; the exit code is 0
 * when our own namespace was scanned (the others are reported, not fatal), 1 when it was not.
 */
async function scanAllNamespaces(request: SampleOptions): Promise<{ rows: Row[]; udpFromProc: boolean; code: number }> {
  const scanner = new NamespaceScanner();
  try {
    const scans = await scanner.scan(request);
    const rows: Row[] = [];
    let udpFromProc = false;
    let code = 1;
    for (const s of scans) {
      if (s.error) {
        process.stderr.write(`sockwatch: netns ${s.netns.inode}: ${s.error.message.split('\n')[0]}\n`);
        continue;
      }
      if (s.netns.self) code = 0;
      udpFromProc ||= s.result!.udpFromProc;
      for (const rec of s.result!.records.sort(byAddress)) rows.push({ rec, netns: s.netns.inode });
    }
    return { rows, udpFromProc, code };
  } finally {
    await scanner.close();
  }
}

export async function runList(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parse(argv, {
    ...FILTER_OPTIONS,
    'min-recv': { type: 'string' },
    'min-send': { type: 'string' },
    skmem: { type: 'boolean', short: 'm' },
    'all-netns': { type: 'boolean' },
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
  const allNetns = values['all-netns'] === true;
  if (allNetns && values.netns !== undefined)
    throw new UsageError('--all-netns and --netns cannot be combined: --all-netns already scans every namespace');
  const thresholds = minRecv !== undefined || minSend !== undefined;
  const request: SampleOptions = {
    ...filter,
    skmem: values.skmem === true,
    // A threshold of "at least 0" matches everything: list all.
    all: !thresholds || minRecv === 0 || minSend === 0,
    // "at least N" is "strictly greater than N-1".
    recvThreshold: minRecv === undefined ? 'off' : Math.max(minRecv - 1, 0),
    sendThreshold: minSend === undefined ? 'off' : Math.max(minSend - 1, 0),
    maxRecords: 0xffffffff,
  };
  let rows: Row[];
  let udpFromProc: boolean;
  let code = 0;
  if (allNetns) {
    ({ rows, udpFromProc, code } = await scanAllNamespaces(request));
  } else {
    const sampler = new Sampler({ netns: resolveNetns(values.netns) });
    try {
      const r = await sampler.sample(request);
      rows = r.records.sort(byAddress).map((rec) => ({ rec }));
      udpFromProc = r.udpFromProc;
    } finally {
      await sampler.close();
    }
  }
  if (format === 'json') {
    for (const row of rows) out.write(jsonLine(row) + '\n');
  } else {
    out.write(table(rows, values.skmem === true, allNetns) + '\n');
  }
  if (udpFromProc) process.stderr.write('sockwatch: the kernel has no udp_diag; UDP sockets were read from /proc/net/udp{,6}\n');
  return code;
}
