// Two views need no router library: "/" (gene list) and "/genes/<symbol>" (detail).
// Real paths rather than hashes, so links are shareable and nginx's SPA fallback serves them.

export function parseRoute(pathname) {
  const m = /^\/genes\/([^/]+)\/?$/.exec(pathname || '/')
  if (m) {
    let symbol
    try {
      symbol = decodeURIComponent(m[1])
    } catch {
      symbol = m[1]
    }
    return { name: 'gene', symbol }
  }
  return { name: 'list' }
}

export function genePath(symbol) {
  return `/genes/${encodeURIComponent(symbol)}`
}
