// One stack of cleanups per test file (each file runs in its own worker): helpers register what
// they create, the file runs the stack from afterEach or afterAll.

const cleanups: Array<() => unknown> = [];

/** Registers `fn` for the next runCleanups(). */
export function onCleanup(fn: () => unknown): void {
  cleanups.push(fn);
}

/** Runs every registered cleanup, the last registered first; all run even if one fails (the first error is thrown). */
export async function runCleanups(): Promise<void> {
  const errors: unknown[] = [];
  while (cleanups.length) {
    try {
      await cleanups.pop()!();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length) throw errors[0];
}
