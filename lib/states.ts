// TCP states as the kernel numbers them (include/net/tcp_states.h) and as ss names them.
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

const NAMES: string[] = [];
for (const [name, n] of Object.entries(TCP_STATES)) NAMES[n] = name;

/** ss-style name of a state number; UDP's CLOSE reads "unconn" as ss prints it. */
export function stateName(state: number, protocol: 'tcp' | 'udp' = 'tcp'): string {
  if (protocol === 'udp' && state === 7) return 'unconn';
  return NAMES[state] ?? `state-${state}`;
}

/** Every state bit ss -a asks for (1..11 plus NEW_SYN_RECV 12, reported as SYN_RECV). */
export const ALL_STATES_MASK = 0x1ffe;
export const UDP_STATES_MASK = (1 << TCP_STATES.established) | (1 << TCP_STATES.close);

const ALIASES: Record<string, number> = {
  ...TCP_STATES,
  estab: 1,
  unconn: 7,
  'syn-received': 3,
  'fin-wait1': 4,
  'fin-wait2': 5,
  timewait: 6,
};

/** Groups accepted wherever a state list is: names as ss -o state takes them. */
const GROUPS: Record<string, number> = {
  all: ALL_STATES_MASK,
  connected: ALL_STATES_MASK & ~(1 << 10) & ~(1 << 7),
  synchronized: ALL_STATES_MASK & ~(1 << 10) & ~(1 << 7) & ~(1 << 2) & ~(1 << 3) & ~(1 << 12),
};

/** Every name a state list accepts (aliases aside), as error messages and the CLI help list them. */
export const STATE_LIST_NAMES: readonly string[] = Object.freeze([...Object.keys(TCP_STATES), 'unconn', ...Object.keys(GROUPS)]);

/** Mask of a list of state names (case-insensitive, `_` or `-`). Throws RangeError naming the bad one. */
export function stateMask(names: readonly string[], option = 'states'): number {
  let mask = 0;
  for (const raw of names) {
    const n = raw.trim().toLowerCase().replace(/_/g, '-');
    if (n in GROUPS) mask |= GROUPS[n];
    else if (n in ALIASES) mask |= 1 << ALIASES[n];
    else
      throw new RangeError(
        `${option}: unknown socket state "${raw}" (known: ${STATE_LIST_NAMES.join(', ')})`,
      );
  }
  // Asking for SYN_RECV includes request sockets (NEW_SYN_RECV, 12), as ss does.
  if (mask & (1 << 3)) mask |= 1 << 12;
  return mask;
}
