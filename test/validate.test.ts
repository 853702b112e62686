// lib/base/validate.ts: the one rule (wrong type TypeError, out of range RangeError, the path and
// what is allowed in every message, unknown keys rejected naming the nearest).
import { describe, expect, it } from 'vitest';
import * as v from '../lib/base/validate';

describe('validate: one rule', () => {
  it('integers: a non-number is a TypeError, a fraction or out of bounds a RangeError', () => {
    expect(v.integer(5, 'options.n')).toBe(5);
    expect(() => v.integer('5', 'options.n')).toThrow(TypeError);
    expect(() => v.integer('5', 'options.n')).toThrow('options.n must be a non-negative integer (got "5")');
    expect(() => v.integer(1.5, 'options.n')).toThrow(RangeError);
    expect(() => v.integer(Number.NaN, 'options.n')).toThrow(RangeError);
    expect(() => v.integer(2 ** 32, 'options.maxRecords', { max: v.UINT32_MAX })).toThrow(
      new RangeError('options.maxRecords must be an integer from 0 to 4294967295 (got 4294967296)'),
    );
    expect(v.optInteger(undefined, 'x', 7)).toBe(7);
  });

  it('durations: non-negative, fractions allowed', () => {
    expect(v.duration(0.5, 'options.d', 1)).toBe(0.5);
    expect(v.duration(undefined, 'options.d', 1)).toBe(1);
    expect(() => v.duration(-1, 'options.d', 1)).toThrow(new RangeError('options.d must be a number of ms, not negative (got -1)'));
    expect(() => v.duration(Infinity, 'options.d', 1)).toThrow(RangeError);
    expect(() => v.duration('1', 'options.d', 1)).toThrow(TypeError);
    expect(() => v.positiveDuration(0, 'options.i', 1)).toThrow(RangeError);
  });

  it("booleans are booleans: 'false' is a TypeError", () => {
    expect(v.boolean(false, 'options.b', true)).toBe(false);
    expect(v.boolean(undefined, 'options.b', true)).toBe(true);
    for (const bad of ['false', 0, 1, 'yes', null]) expect(() => v.boolean(bad, 'options.b')).toThrow(TypeError);
    expect(() => v.boolean('false', 'options.all')).toThrow('options.all must be true or false (got "false")');
  });

  it('enums list their values', () => {
    expect(v.oneOf('b', 'options.e', ['a', 'b'])).toBe('b');
    expect(v.oneOf(undefined, 'options.e', ['a', 'b'], 'a')).toBe('a');
    expect(() => v.oneOf('c', 'options.e', ['a', 'b'])).toThrow(new TypeError("options.e must be one of 'a', 'b' (got \"c\")"));
  });

  it("thresholds: a number or 'off' (accept also 'limit'); undefined is the caller's default", () => {
    expect(v.byteThreshold(undefined, 'options.t', 'off')).toBe('off');
    expect(v.byteThreshold(undefined, 'options.t', 1024)).toBe(1024);
    expect(v.byteThreshold('off', 'options.t', 1024)).toBe('off');
    expect(v.byteThreshold(0, 'options.t', 1024)).toBe(0);
    expect(() => v.byteThreshold(-1, 'options.t', 0)).toThrow(RangeError);
    expect(() => v.byteThreshold('limit', 'options.t', 0)).toThrow(TypeError);
    expect(v.acceptThreshold('limit', 'options.a', 'off')).toBe('limit');
    expect(() => v.acceptThreshold('max', 'options.acceptThreshold', 'off')).toThrow(
      new TypeError("options.acceptThreshold must be a non-negative integer number of connections, 'limit' or 'off' (got \"max\")"),
    );
  });

  it('lists: a string where an array is expected is a TypeError, each item is named by index', () => {
    expect(v.stringList(['a'], 'options.s')).toEqual(['a']);
    expect(() => v.stringList('established', 'options.states')).toThrow(
      new TypeError('options.states must be an array of strings (got "established")'),
    );
    expect(() => v.stringList(['a', 1], 'options.states')).toThrow(new TypeError('options.states[1] must be a string (got 1)'));
    expect(v.bigintList(new Set([1n, 2n]), 'options.c')).toEqual([1n, 2n]);
    expect(() => v.bigintList([1], 'options.c')).toThrow(TypeError);
    expect(() => v.bigintList([1], 'options.c')).toThrow(/options.c\[0\] must be a bigint/);
    expect(() => v.bigintList([-1n], 'options.c')).toThrow(RangeError);
    expect(() => v.bigintList([2n ** 64n], 'options.c')).toThrow(RangeError);
    expect(() => v.bigintList('12', 'options.c')).toThrow(TypeError);
    expect(() => v.integerList([2 ** 32], 'options.i', { max: v.UINT32_MAX })).toThrow(RangeError);
  });

  it('port specs', () => {
    expect(v.portSpec('80', 'p')).toEqual({ from: 80, to: 80 });
    expect(v.portSpec(' 1024 - 2048 ', 'p')).toEqual({ from: 1024, to: 2048 });
    expect(v.portSpec({ from: 1, to: 2 }, 'p')).toEqual({ from: 1, to: 2 });
    expect(() => v.portSpec('http', 'p')).toThrow(TypeError);
    expect(() => v.portSpec(70000, 'p')).toThrow(new RangeError('p: port 70000 is out of range 0-65535'));
    expect(() => v.portSpec('9-3', 'p')).toThrow(RangeError);
    expect(() => v.portSpec({ from: 1, too: 2 }, 'p')).toThrow(/unknown option "too" \(did you mean "to"\?\)/);
    expect(() => v.portList(80, 'options.ports')).toThrow(TypeError);
    expect(v.portList(undefined, 'options.ports')).toBeUndefined();
  });

  it('options objects reject unknown keys naming the nearest valid one', () => {
    expect(v.optionsObject(undefined, 'options', ['a'])).toEqual({});
    expect(() => v.optionsObject(null, 'options', ['a'])).toThrow(new TypeError('options must be an object (got null)'));
    expect(() => v.optionsObject([], 'options', ['a'])).toThrow(TypeError);
    expect(() => v.optionsObject({ recvTreshold: 1 }, 'options', ['recvThreshold', 'sendThreshold'])).toThrow(
      new TypeError('options: unknown option "recvTreshold" (did you mean "recvThreshold"?); valid options: recvThreshold, sendThreshold'),
    );
    expect(v.nearest('NETNZ', ['netns', 'tcp'])).toBe('netns');
  });
});
