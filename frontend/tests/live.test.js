import { describe, expect, it } from 'vitest'
import { createLiveConnection, describeEvent, parseLiveMessage } from '../src/live.js'

class FakeSocket {
  static instances = []
  constructor(url) {
    this.url = url
    this.closed = false
    FakeSocket.instances.push(this)
  }
  close() {
    this.closed = true
    this.onclose?.({ code: 1000 })
  }
  // test helpers
  open() {
    this.onopen?.({})
  }
  receive(data) {
    this.onmessage?.({ data: typeof data === 'string' ? data : JSON.stringify(data) })
  }
  drop() {
    this.onerror?.({})
    this.onclose?.({ code: 1006 })
  }
}

function setup(opts = {}) {
  FakeSocket.instances = []
  const statuses = []
  const events = []
  const timers = []
  const conn = createLiveConnection({
    url: 'ws://h/ws/events',
    WebSocketImpl: FakeSocket,
    onStatus: (s) => statuses.push(s),
    onEvent: (e) => events.push(e),
    setTimer: (fn, ms) => timers.push({ fn, ms }) - 1,
    clearTimer: (id) => {
      timers[id] = null
    },
    ...opts,
  })
  return { conn, statuses, events, timers }
}

describe('parseLiveMessage', () => {
  it('separates control frames from data events', () => {
    expect(parseLiveMessage('{"type":"hello"}').isControl).toBe(true)
    expect(parseLiveMessage('{"type":"ping"}').isControl).toBe(true)
    expect(parseLiveMessage('{"type":"gene_updated","symbol":"PKD1"}').isControl).toBe(false)
  })

  it('ignores garbage', () => {
    expect(parseLiveMessage('not json')).toBeNull()
    expect(parseLiveMessage('42')).toBeNull()
    expect(parseLiveMessage('{"no":"type"}')).toBeNull()
  })

  it('describes events for the indicator', () => {
    expect(describeEvent({ type: 'gene_updated', symbol: 'PKD1', op: 'UPDATE' })).toBe('gene_updated PKD1 (UPDATE)')
    expect(describeEvent({ type: 'evidence_added' })).toBe('evidence_added')
  })
})

describe('createLiveConnection', () => {
  it('reports connecting, then connected on open', () => {
    const { statuses } = setup()
    expect(FakeSocket.instances[0].url).toBe('ws://h/ws/events')
    expect(statuses).toEqual(['connecting'])
    FakeSocket.instances[0].open()
    expect(statuses).toEqual(['connecting', 'connected'])
  })

  it('forwards data events only, not hello/ping', () => {
    const { events } = setup()
    const ws = FakeSocket.instances[0]
    ws.open()
    ws.receive({ type: 'hello' })
    ws.receive({ type: 'ping' })
    ws.receive('garbage')
    ws.receive({ type: 'gene_updated', symbol: 'PKD1', op: 'UPDATE' })
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ type: 'gene_updated', symbol: 'PKD1', op: 'UPDATE' })
  })

  it('goes disconnected on drop and reconnects with growing backoff', () => {
    const { statuses, timers } = setup({ reconnectDelayMs: 100, maxReconnectDelayMs: 250 })
    FakeSocket.instances[0].drop()
    expect(statuses.at(-1)).toBe('disconnected')
    expect(timers.map((t) => t.ms)).toEqual([100])
    timers[0].fn()
    expect(FakeSocket.instances).toHaveLength(2)
    FakeSocket.instances[1].drop()
    timers[1].fn()
    FakeSocket.instances[2].drop()
    expect(timers.map((t) => t.ms)).toEqual([100, 200, 250])
    // A successful open resets the backoff.
    timers[2].fn()
    FakeSocket.instances[3].open()
    FakeSocket.instances[3].drop()
    expect(timers.at(-1).ms).toBe(100)
  })

  it('does not reconnect after close()', () => {
    const { conn, statuses, timers } = setup()
    FakeSocket.instances[0].open()
    conn.close()
    expect(FakeSocket.instances[0].closed).toBe(true)
    expect(statuses.at(-1)).toBe('disconnected')
    expect(timers).toHaveLength(0)
  })

  it('cancels a pending reconnect on close()', () => {
    const { conn, timers } = setup()
    FakeSocket.instances[0].drop()
    conn.close()
    expect(timers[0]).toBeNull()
  })
})
