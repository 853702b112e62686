// TCP states as the kernel numbers them (include/net/tcp_states.h) and as ss names them.
// Rule: one list of names; the types below are derived from it, so a state list in code is checked
// at compile time with the same names the runtime accepts (which also takes upper case and `_`).
export const TCP_STATES = {
  established: 1,
  'syn-sent': 2,
  'syn-recv': 3,
  'fin-wait-1': 4,
  'fin-wait-2': 5,
  'time-wait': 6,
  close: 7,
  'close-wait': 8,
  'last-ack': 9,
  listen: 10,
  closing: 11,
} as const;

export type StateName = keyof typeof TCP_STATES;

/**
 * A state as records and counts name it: a TCP state, 'unconn' (UDP's CLOSE, as ss prints it), or
 * `state-N` for a number this list does not know (a newer kernel's).
 */
export type SocketStateName = StateName | 'unconn' | `state-${number}`;

/** Groups a state list accepts, as ss -o state takes them. */
export type StateGroupName = 'all' | 'connected' | 'synchronized';
/** Other spellings a state list accepts. */
export type StateAlias = 'estab' | 'unconn' | 'syn-received' | 'fin-wait1' | 'fin-wait2' | 'timewait';
/** One entry of a `states` option: a state, an alias or a group (lower case with `-`, as ss spells them). */
export type StateListName = StateName | StateAlias | StateGroupName;

const NAMES: StateName[] = [];
for (const [name, n] of Object.entries(TCP_STATES) as [StateName, number][]) NAMES[n] = name;
/** NEW_SYN_RECV: a request socket, reported by ss (and here) as syn-recv. */
NAMES[12] = 'syn-recv';

/** ss-style name of a state number; UDP's CLOSE reads "unconn" as ss prints it. */
export function stateName(state: number, protocol: 'tcp' | 'udp' = 'tcp'): SocketStateName {
  if (protocol === 'udp' && state === 7) return 'unconn';
  return NAMES[state] ?? `state-${state}`;
}

/**
 * The states of full sockets: every state but TIME_WAIT and SYN_RECV, whose sockets (TIME_WAIT and
 * request sockets, NEW_SYN_RECV, which the kernel adds to a mask holding SYN_RECV) are minisocks
 * the kernel reports with no owner (uid and inode 0) and empty queues. Full SYN_RECV sockets exist
 * only for TCP Fast Open servers during a handshake's last round trip, and are left out with them.
 */
export const FULL_SOCKET_STATES: readonly StateName[] = Object.freeze([
  'established',
  'syn-sent',
  'fin-wait-1',
  'fin-wait-2',
  'close',
  'close-wait',
  'last-ack',
  'listen',
  'closing',
]);

/** Every state bit ss -a asks for (1..11 plus NEW_SYN_RECV 12, reported as SYN_RECV). */
export const ALL_STATES_MASK = 0x1ffe;
export const UDP_STATES_MASK = (1 << TCP_STATES.established) | (1 << TCP_STATES.close);

const ALIASES: Record<Exclude<StateListName, StateGroupName>, number> = {
  ...TCP_STATES,
  estab: 1,
  unconn: 7,
  'syn-received': 3,
  'fin-wait1': 4,
  'fin-wait2': 5,
  timewait: 6,
};

/** Groups accepted wherever a state list is: names as ss -o state takes them. */
const GROUPS: Record<StateGroupName, number> = {
  all: ALL_STATES_MASK,
  connected: ALL_STATES_MASK & ~(1 << 10) & ~(1 << 7),
  synchronized: ALL_STATES_MASK & ~(1 << 10) & ~(1 << 7) & ~(1 << 2) & ~(1 << 3) & ~(1 << 12),
};

/** Every name a state list accepts (aliases aside), as error messages and the CLI help list them. */
export const STATE_LIST_NAMES: readonly StateListName[] = Object.freeze([
  ...(Object.keys(TCP_STATES) as StateName[]),
  'unconn',
  ...(Object.keys(GROUPS) as StateGroupName[]),
]);

/** Mask of a list of state names (case-insensitive, `_` or `-`). Throws RangeError naming the bad one. */
export function stateMask(names: readonly string[], option = 'states'): number {
  let mask = 0;
  names.forEach((raw: unknown, i) => {
    // A non-string entry is a type fault, named by its index (callers check first; this is the floor).
    if (typeof raw !== 'string') throw new TypeError(`${option}[${i}] must be a string (got ${typeof raw})`);
    const n = raw.trim().toLowerCase().replace(/_/g, '-');
    if (Object.hasOwn(GROUPS, n)) mask |= GROUPS[n as StateGroupName];
    else if (Object.hasOwn(ALIASES, n)) mask |= 1 << ALIASES[n as keyof typeof ALIASES];
    else throw new RangeError(`${option}: unknown socket state "${raw}" (known: ${STATE_LIST_NAMES.join(', ')})`);
  });
  // Asking for SYN_RECV includes request sockets (NEW_SYN_RECV, 12), as ss does.
  if (mask & (1 << 3)) mask |= 1 << 12;
  return mask;
}
