// Socket-selection flags shared by `list` and `queues`. Values are checked by the library's own
// validators (lib/base/validate.ts), their errors turned into usage errors naming the flag.
import * as fs from 'node:fs';
import { portSpec } from '../base/validate';
import { addressPrefix } from '../bytecode';
import type { SampleOptions, StateListName } from '../sampler';
import { STATE_LIST_NAMES, stateMask } from '../states';
import { listFlag, usage, type OptionSpec, type Parsed } from './args';
import { UsageError } from './errors';

export const FILTER_OPTIONS: OptionSpec = {
  tcp: { type: 'boolean', short: 't' },
  udp: { type: 'boolean', short: 'u' },
  ipv4: { type: 'boolean', short: '4' },
  ipv6: { type: 'boolean', short: '6' },
  state: { type: 'string', multiple: true },
  sport: { type: 'string', multiple: true },
  dport: { type: 'string', multiple: true },
  'exclude-sport': { type: 'string', multiple: true },
  'exclude-dport': { type: 'string', multiple: true },
  src: { type: 'string', multiple: true },
  dst: { type: 'string', multiple: true },
  netns: { type: 'string' },
};

/** `head` followed by the comma-separated words, wrapped at `width` with continuation lines indented. */
function wrapList(head: string, words: readonly string[], indent: number, width = 100): string {
  const lines: string[] = [];
  let line = head;
  words.forEach((w, i) => {
    const piece = i < words.length - 1 ? `${w},` : w;
    if (line.length + 1 + piece.length > width) {
      lines.push(line);
      line = ' '.repeat(indent) + piece;
    } else line += ` ${piece}`;
  });
  lines.push(line);
  return lines.join('\n');
}

// One list: the names the help shows are the names the state parser knows (and its errors list).
const STATE_HELP = wrapList('  --state LIST           states, comma-separated (default all):', STATE_LIST_NAMES, 25);

export const FILTER_HELP = `Selection:
  -t, --tcp              TCP sockets (default: TCP and UDP)
  -u, --udp              UDP sockets
  -4, --ipv4             IPv4 only (default: both families; v4-mapped IPv6 sockets count as IPv6)
  -6, --ipv6             IPv6 only
${STATE_HELP}
  --sport LIST           local ports or ranges to include (80,443,1024-2048); filtered in the kernel
  --dport LIST           remote ports or ranges to include
  --exclude-sport LIST   local ports or ranges to leave out
  --exclude-dport LIST   remote ports or ranges to leave out
  --src PREFIX           local addresses or CIDR prefixes to include (127.0.0.1, 10.0.0.0/8,
                         fd00::/8; repeat or comma-separate: any of them); filtered in the kernel
  --dst PREFIX           remote addresses or prefixes to include; both given: both must match. An
                         IPv4 prefix also matches ::ffff:a.b.c.d of dual-stack IPv6 sockets (as ss)
  --netns PATH|NAME      sample another network namespace: /proc/PID/ns/net, /var/run/netns/NAME
                         or just NAME (needs root)`;

function portList(flag: string, v: unknown): string[] | undefined {
  const list = listFlag(v);
  if (!list) return undefined;
  for (const p of list) usage(() => portSpec(p, `--${flag}`));
  return list;
}

/** A --src/--dst flag: addresses or CIDR prefixes, repeatable and comma-separated; checked here. */
export function prefixFlag(flag: string, v: unknown): string[] | undefined {
  const list = listFlag(v);
  if (!list) return undefined;
  if (list.length === 0) throw new UsageError(`--${flag}: expected an IPv4 or IPv6 address or CIDR prefix (got "")`);
  for (const p of list) usage(() => addressPrefix(p, `--${flag}`));
  return list;
}

/** Resolves --netns NAME to /var/run/netns/NAME; checks the file exists. */
export function resolveNetns(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  const p = s.includes('/') ? s : `/var/run/netns/${s}`;
  // stat(), not existsSync(): that is access(2), which drops capabilities for a non-root user, so
  // another user's /proc/PID/ns/net looked absent to a process holding CAP_SYS_PTRACE. A file that
  // exists but cannot be opened is the Sampler's error (it names the file and the errno).
  try {
    fs.statSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
      throw new UsageError(`--netns: ${p} does not exist (expected /proc/PID/ns/net or a name under /var/run/netns)`);
    }
  }
  return p;
}

export function filterOptions(values: Parsed['values']): SampleOptions {
  const states = listFlag(values.state);
  if (states) usage(() => stateMask(states, '--state'));
  // A flag not given is left unset (not false): no flag means both protocols / both families.
  const flag = (name: string): true | undefined => (values[name] === true ? true : undefined);
  return {
    tcp: flag('tcp'),
    udp: flag('udp'),
    ipv4: flag('ipv4'),
    ipv6: flag('ipv6'),
    states: states as StateListName[] | undefined, // checked by stateMask above
    localPorts: portList('sport', values.sport),
    remotePorts: portList('dport', values.dport),
    excludeLocalPorts: portList('exclude-sport', values['exclude-sport']),
    excludeRemotePorts: portList('exclude-dport', values['exclude-dport']),
    localAddresses: prefixFlag('src', values.src),
    remoteAddresses: prefixFlag('dst', values.dst),
  };
}
