import { describe, expect, it } from 'vitest';
import { redactText, redactUrl } from '../lib/base/redact';

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

describe('one secret rule for URLs and text', () => {
  const names = [
    'sig',
    'signature',
    'token',
    'access_token',
    'refresh_token',
    'id_token',
    'jwt',
    'key',
    'apikey',
    'api_key',
    'private_key',
    'secret',
    'client_secret',
    'pass',
    'password',
    'passwd',
    'pwd',
    'auth',
    'authorization',
    'credential',
    'credentials',
    'session',
    'code',
    'sas',
    'X_Api_Key_Token',
    'db_password',
    'MySecretThing',
    'Signature2',
    'aws_credential_id',
    'PRIVATE_KEY_PEM',
    'SIG',
    'Jwt',
  ];
  it.each(names)('redacts %s in a parsed URL, in name=value text and in JSON alike', (name) => {
    const url = `https://h.test/p?keep=1&${name}=S3CR3T`;
    expect(redactUrl(url)).not.toContain('S3CR3T');
    expect(redactUrl(url)).toContain('keep=1');
    expect(redactText(`failed: ${url} (${name}=S3CR3T)`)).not.toContain('S3CR3T');
    expect(redactText(`{"${name}": "S3CR3T", "keep": "v"}`)).toBe(`{"${name}": "REDACTED", "keep": "v"}`);
  });

  it('keeps names that are not secret', () => {
    expect(redactText('a=1 state=open se=2030 sv=2024 keyboard=x')).toBe('a=1 state=open se=2030 sv=2024 keyboard=x');
    expect(redactUrl('https://h.test/p?sp=rw&se=2030')).toBe('https://h.test/p?sp=rw&se=2030');
  });

  it.each([
    ['http://user:pass@[bad/a?token=S', ['user', 'pass', 'token=S']],
    ['http://user:pass@127.0.0.1:99999/a', ['user', 'pass']],
    ['user:pass@127.0.0.1/a', ['user', 'pass']],
    ['--url: "user:pass@127.0.0.1/a" is not a valid URL', ['user', 'pass']],
    ['https://user:pass@example.test/a', ['user', 'pass']],
  ])('redacts user info in %s, parsed or not', (input, secrets) => {
    const out = redactText(input);
    for (const s of secrets) expect(out).not.toContain(s);
    expect(out).toContain('REDACTED@');
    expect(redactUrl(input)).toContain('REDACTED@');
    for (const s of secrets) expect(redactUrl(input)).not.toContain(s);
  });

  it('leaves text without credentials alone', () => {
    const text = 'connect ECONNREFUSED 127.0.0.1:8080 at 10:30 (git@github.com:x/y)';
    expect(redactText(text)).toBe(text);
  });
});
