// Dump kinds understood by createdump (values of the IPC dumpType field).

export type DumpTypeName = 'normal' | 'withheap' | 'triage' | 'full';

/** Wire values (runtime generatedumpflags / client DumpType). */
export const DUMP_TYPE_CODES: Readonly<Record<DumpTypeName, number>> = Object.freeze({
  normal: 1, // mini dump: stacks, modules, some data (--normal)
  withheap: 2, // plus the managed heap (--withheap)
  triage: 3, // like normal, with PII removed (--triage)
  full: 4, // all readable memory, module images included (--full)
});

/** Accepts Normal / WithHeap / Triage / Full in any case (also "heap", "mini"). */
export function parseDumpType(value: unknown, name = 'type'): DumpTypeName {
  if (typeof value !== 'string') throw new TypeError(`${name} must be one of Normal, WithHeap, Triage, Full; got ${String(value)}`);
  const v = value.toLowerCase();
  if (v === 'normal' || v === 'mini') return 'normal';
  if (v === 'withheap' || v === 'heap') return 'withheap';
  if (v === 'triage') return 'triage';
  if (v === 'full') return 'full';
  throw new RangeError(`${name} must be one of Normal, WithHeap, Triage, Full; got ${JSON.stringify(value)}`);
}
