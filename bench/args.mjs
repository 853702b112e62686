// The bench scripts' command lines: each argument with a reader for its value.

/** Calls `handle(arg, value)` for each argument; `value()` takes the next one, or throws naming `arg`. */
export function eachArg(argv, handle) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    handle(a, () => {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(`${a} needs a value`);
      return v;
    });
  }
}
