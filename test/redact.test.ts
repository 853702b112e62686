import { describe, expect, it } from 'vitest';
import { redactText, redactUrl } from '../lib/redact';

describe('redaction', () => {
  it('removes URL credentials and secret query values, keeps the rest', () => {
    const u = redactUrl('https://user:pw@example.test/hook?a=1&sig=abc%2Fdef&token=t0k&se=2030-01-01');
    expect(u).not.toMatch(/pw|abc|t0k/);
    expect(u).toMatch(/a=1/);
    expect(u).toMatch(/se=2030-01-01/);
    expect(u).toMatch(/REDACTED@example\.test/);
  });

  it('redacts secrets inside free text, JSON bodies and auth headers', () => {
    const t = redactText(
      'PUT https://acct.blob.core.windows.net/c/b?sv=1&sig=SECRET1 failed (token=SECRET2) {"password":"SECRET3"} Bearer SECRET4',
    );
    for (const s of ['SECRET1', 'SECRET2', 'SECRET3', 'SECRET4']) expect(t).not.toContain(s);
    expect(t).toContain('sv=1');
  });
});
