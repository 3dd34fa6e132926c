import { afterEach, describe, expect, it, vi } from 'vitest'

// config.js reads window._env_ at import time, exactly as the bundle does after /env-config.js ran.
describe('config module with window._env_', () => {
  afterEach(() => {
    delete window._env_
    vi.resetModules()
  })

  it('picks up values injected by env-config.js', async () => {
    window._env_ = { API_BASE_URL: '/custom-api', WS_URL: 'wss://live.example/ws', ENVIRONMENT: 'staging' }
    const { config } = await import('../src/config.js')
    expect(config).toEqual({ apiBaseUrl: '/custom-api', wsUrl: 'wss://live.example/ws', environment: 'staging' })
  })

  it('uses defaults when env-config.js did not run', async () => {
    const { config } = await import('../src/config.js')
    expect(config.apiBaseUrl).toBe('/api')
    expect(config.wsUrl).toBe('/ws')
  })
})
