// Thin client for the backend REST API. URL builders are pure so they can be tested alone.

export class ApiError extends Error {
  constructor(message, status) {
    super(message)
    this.name = 'ApiError'
    this.status = status
  }
}

export function genesUrl(baseUrl, { page = 1, pageSize = 25, search = '', sort = 'symbol' } = {}) {
  const params = new URLSearchParams()
  params.set('page', String(page))
  params.set('page_size', String(pageSize))
  const term = search.trim()
  if (term) params.set('search', term)
  if (sort) params.set('sort', sort)
  return `${baseUrl}/genes?${params.toString()}`
}

export function geneUrl(baseUrl, symbol) {
  return `${baseUrl}/genes/${encodeURIComponent(symbol)}`
}

export function createApi({ baseUrl, fetchImpl = (...args) => globalThis.fetch(...args) }) {
  async function getJson(url, signal) {
    const res = await fetchImpl(url, { headers: { Accept: 'application/json' }, signal })
    if (!res.ok) {
      throw new ApiError(`${res.status} ${res.statusText || 'error'} for ${url}`, res.status)
    }
    return res.json()
  }
  return {
    listGenes: (query, signal) => getJson(genesUrl(baseUrl, query), signal),
    getGene: (symbol, signal) => getJson(geneUrl(baseUrl, symbol), signal),
  }
}
