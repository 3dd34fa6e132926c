import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createApi } from '../src/api.js'
import GeneList from '../src/components/GeneList.vue'
import GeneDetail from '../src/components/GeneDetail.vue'
import LiveIndicator from '../src/components/LiveIndicator.vue'

const page1 = {
  items: [
    { hgnc_id: 'HGNC:9008', symbol: 'PKD1', name: 'polycystin 1', aliases: ['PBP'], score: 0.98, classification: 'definitive', evidence_count: 3 },
    { hgnc_id: 'HGNC:9009', symbol: 'PKD2', name: 'polycystin 2', aliases: [], score: 0.9, classification: 'definitive', evidence_count: 2 },
  ],
  total: 60,
  page: 1,
  page_size: 25,
}

function jsonResponse(body, status = 200) {
  return { ok: status < 400, status, statusText: status === 404 ? 'Not Found' : 'OK', json: async () => body }
}

describe('GeneList', () => {
  let fetchImpl
  let api
  beforeEach(() => {
    fetchImpl = vi.fn(async () => jsonResponse(page1))
    api = createApi({ baseUrl: '/api', fetchImpl })
  })
  afterEach(() => vi.useRealTimers())

  it('renders one row per gene from the fetched response', async () => {
    const w = mount(GeneList, { props: { api } })
    await flushPromises()
    expect(fetchImpl).toHaveBeenCalledWith('/api/genes?page=1&page_size=25&sort=symbol', expect.anything())
    const rows = w.findAll('[data-testid="gene-row"]')
    expect(rows.map((r) => r.attributes('data-symbol'))).toEqual(['PKD1', 'PKD2'])
    expect(rows[0].text()).toContain('polycystin 1')
    expect(rows[0].text()).toContain('0.98')
    expect(w.get('[data-testid="total"]').text()).toBe('60 genes')
    expect(w.get('[data-testid="page-info"]').text()).toBe('Page 1 of 3')
  })

  it('debounces search input into a single request', async () => {
    vi.useFakeTimers()
    const w = mount(GeneList, { props: { api, debounceMs: 300 } })
    await flushPromises()
    fetchImpl.mockClear()
    const input = w.get('[data-testid="search"]')
    await input.setValue('p')
    await input.setValue('pk')
    await input.setValue('pkd')
    vi.advanceTimersByTime(299)
    await flushPromises()
    expect(fetchImpl).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    await flushPromises()
    expect(fetchImpl).toHaveBeenCalledTimes(1)
    expect(fetchImpl.mock.calls[0][0]).toBe('/api/genes?page=1&page_size=25&search=pkd&sort=symbol')
  })

  it('toggles sort and pages', async () => {
    const w = mount(GeneList, { props: { api } })
    await flushPromises()
    await w.get('[data-testid="sort-score"]').trigger('click')
    await flushPromises()
    expect(fetchImpl.mock.calls.at(-1)[0]).toContain('sort=-score')
    await w.get('[data-testid="sort-symbol"]').trigger('click')
    await w.get('[data-testid="sort-symbol"]').trigger('click')
    await flushPromises()
    expect(fetchImpl.mock.calls.at(-1)[0]).toContain('sort=-symbol')
    await w.get('[data-testid="next"]').trigger('click')
    await flushPromises()
    expect(fetchImpl.mock.calls.at(-1)[0]).toContain('page=2')
    expect(w.get('[data-testid="prev"]').attributes('disabled')).toBeUndefined()
  })

  it('reloads when the live refresh key changes', async () => {
    const w = mount(GeneList, { props: { api, refreshKey: 0 } })
    await flushPromises()
    const before = fetchImpl.mock.calls.length
    await w.setProps({ refreshKey: 1 })
    await flushPromises()
    expect(fetchImpl.mock.calls.length).toBe(before + 1)
  })

  it('shows API errors', async () => {
    api = createApi({ baseUrl: '/api', fetchImpl: async () => jsonResponse({}, 503) })
    const w = mount(GeneList, { props: { api } })
    await flushPromises()
    expect(w.get('[data-testid="error"]').text()).toContain('503')
  })

  it('emits open with the symbol when a gene is clicked', async () => {
    const w = mount(GeneList, { props: { api } })
    await flushPromises()
    await w.get('[data-symbol="PKD2"] a').trigger('click')
    expect(w.emitted('open')).toEqual([['PKD2']])
  })
})

describe('GeneDetail', () => {
  it('renders the evidence list', async () => {
    const gene = {
      ...page1.items[0],
      evidence: [
        { source: 'ClinVar', detail: { variants: 120 }, created_at: '2026-01-01T00:00:00Z' },
        { source: 'PanelApp', detail: 'green', created_at: '2026-01-02T00:00:00Z' },
      ],
    }
    const fetchImpl = vi.fn(async () => jsonResponse(gene))
    const w = mount(GeneDetail, { props: { api: createApi({ baseUrl: '/api', fetchImpl }), symbol: 'PKD1' } })
    await flushPromises()
    expect(fetchImpl.mock.calls[0][0]).toBe('/api/genes/PKD1')
    expect(w.get('[data-testid="gene-symbol"]').text()).toBe('PKD1')
    const items = w.findAll('[data-testid="evidence-item"]')
    expect(items).toHaveLength(2)
    expect(items[0].text()).toContain('ClinVar')
    expect(items[0].text()).toContain('variants: 120')
  })

  it('says not found on 404', async () => {
    const api = createApi({ baseUrl: '/api', fetchImpl: async () => jsonResponse({ detail: 'x' }, 404) })
    const w = mount(GeneDetail, { props: { api, symbol: 'NOPE' } })
    await flushPromises()
    expect(w.get('[data-testid="not-found"]').text()).toContain('NOPE')
  })
})

describe('LiveIndicator', () => {
  it('shows status and the last event', async () => {
    const w = mount(LiveIndicator, { props: { status: 'disconnected' } })
    expect(w.get('[data-testid="live-indicator"]').attributes('data-status')).toBe('disconnected')
    expect(w.get('[data-testid="live-status"]').text()).toBe('Offline')
    expect(w.find('[data-testid="live-last-event"]').exists()).toBe(false)
    await w.setProps({ status: 'connected', lastEvent: { type: 'gene_updated', symbol: 'PKD1', op: 'UPDATE' } })
    expect(w.get('[data-testid="live-status"]').text()).toBe('Live')
    expect(w.get('[data-testid="live-last-event"]').text()).toContain('gene_updated PKD1 (UPDATE)')
  })
})
