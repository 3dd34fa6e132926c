import { describe, expect, it } from 'vitest'
import { resolveConfig, resolveWsEventsUrl } from '../src/config.js'

const httpLoc = { protocol: 'http:', host: 'genes.example:8080' }
const httpsLoc = { protocol: 'https:', host: 'genes.example' }

describe('resolveConfig', () => {
  it('falls back to relative defaults when window._env_ is absent', () => {
    expect(resolveConfig(undefined, {})).toEqual({
      apiBaseUrl: '/api',
      wsUrl: '/ws',
      environment: 'production',
    })
  })

  it('prefers window._env_ over build-time VITE_* values', () => {
    const cfg = resolveConfig(
      { API_BASE_URL: 'https://api.example/api', WS_URL: 'wss://api.example/ws', ENVIRONMENT: 'staging' },
      { VITE_API_BASE_URL: 'http://build-time/api', VITE_WS_URL: '/build-ws', VITE_ENVIRONMENT: 'dev' },
    )
    expect(cfg).toEqual({
      apiBaseUrl: 'https://api.example/api',
      wsUrl: 'wss://api.example/ws',
      environment: 'staging',
    })
  })

  it('uses VITE_* values when the runtime value is missing or empty', () => {
    const cfg = resolveConfig({ API_BASE_URL: '' }, { VITE_API_BASE_URL: 'http://localhost:8000/api', VITE_WS_URL: '/w' })
    expect(cfg.apiBaseUrl).toBe('http://localhost:8000/api')
    expect(cfg.wsUrl).toBe('/w')
    expect(cfg.environment).toBe('production')
  })

  it('strips trailing slashes so paths join cleanly', () => {
    expect(resolveConfig({ API_BASE_URL: '/api/', WS_URL: 'ws://h/ws//' }).apiBaseUrl).toBe('/api')
    expect(resolveConfig({ WS_URL: 'ws://h/ws//' }).wsUrl).toBe('ws://h/ws')
  })
})

describe('resolveWsEventsUrl', () => {
  it('turns a relative path into ws:// on the page host', () => {
    expect(resolveWsEventsUrl('/ws', httpLoc)).toBe('ws://genes.example:8080/ws/events')
  })

  it('uses wss:// when the page is served over https', () => {
    expect(resolveWsEventsUrl('/ws', httpsLoc)).toBe('wss://genes.example/ws/events')
  })

  it('keeps absolute ws(s) URLs and converts http(s) ones', () => {
    expect(resolveWsEventsUrl('wss://other.example/ws', httpLoc)).toBe('wss://other.example/ws/events')
    expect(resolveWsEventsUrl('ws://10.0.0.1:8000/ws/', httpsLoc)).toBe('ws://10.0.0.1:8000/ws/events')
    expect(resolveWsEventsUrl('https://other.example/ws', httpLoc)).toBe('wss://other.example/ws/events')
    expect(resolveWsEventsUrl('http://other.example/ws', httpsLoc)).toBe('ws://other.example/ws/events')
  })

  it('handles protocol-relative and slash-less paths', () => {
    expect(resolveWsEventsUrl('//other.example/ws', httpsLoc)).toBe('wss://other.example/ws/events')
    expect(resolveWsEventsUrl('ws', httpLoc)).toBe('ws://genes.example:8080/ws/events')
  })
})
