import { describe, expect, it, vi } from 'vitest'
import { ApiError, createApi, geneUrl, genesUrl } from '../src/api.js'

describe('URL building', () => {
  it('builds the list URL with paging, search and sort', () => {
    expect(genesUrl('/api', { page: 2, pageSize: 10, search: ' pkd ', sort: '-score' })).toBe(
      '/api/genes?page=2&page_size=10&search=pkd&sort=-score',
    )
  })

  it('omits an empty search and uses defaults', () => {
    expect(genesUrl('/api')).toBe('/api/genes?page=1&page_size=25&sort=symbol')
    expect(genesUrl('https://x.example/api', { search: '   ' })).toBe(
      'https://x.example/api/genes?page=1&page_size=25&sort=symbol',
    )
  })

  it('encodes search terms and symbols', () => {
    expect(genesUrl('/api', { search: 'a&b=c' })).toContain('search=a%26b%3Dc')
    expect(geneUrl('/api', 'PKD1')).toBe('/api/genes/PKD1')
    expect(geneUrl('/api', 'A/B ?')).toBe('/api/genes/A%2FB%20%3F')
  })
})

describe('createApi', () => {
  it('fetches JSON from the configured base', async () => {
    const fetchImpl = vi.fn(async () => ({ ok: true, json: async () => ({ items: [], total: 0 }) }))
    const api = createApi({ baseUrl: '/api', fetchImpl })
    await expect(api.listGenes({ page: 3 })).resolves.toEqual({ items: [], total: 0 })
    expect(fetchImpl.mock.calls[0][0]).toBe('/api/genes?page=3&page_size=25&sort=symbol')
  })

  it('raises ApiError with the status on HTTP errors', async () => {
    const fetchImpl = async () => ({ ok: false, status: 404, statusText: 'Not Found', json: async () => ({}) })
    const api = createApi({ baseUrl: '/api', fetchImpl })
    const err = await api.getGene('NOPE').catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(404)
    expect(err.message).toContain('/api/genes/NOPE')
  })
})
