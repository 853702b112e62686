/**
 * The request URL for one alert: the base URL with the alert's params appended to its query. The
 * base URL's own query is kept byte for byte (a signature over it stays valid); the fragment is
 * dropped (it is never sent).
 */
export function alertUrl(base: URL, params: Readonly<Record<string, string>>): URL {
  const u = new URL(base.href);
  u.hash = '';
  const extra = Object.entries(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
  if (extra) {
    const existing = u.search.slice(1);
    u.search = existing ? `${existing}&${extra}` : extra;
  }
  return u;
}
