// WebSocket connection to /ws/events with status tracking and reconnect.
// The server sends {"type":"hello"} on connect and {"type":"ping"} as keepalive; every other
// message is a data event such as {"type":"gene_updated","symbol":"PKD1","op":"UPDATE"}.

const CONTROL_TYPES = new Set(['hello', 'ping', 'pong'])

export function parseLiveMessage(raw) {
  let msg
  try {
    msg = JSON.parse(raw)
  } catch {
    return null
  }
  if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return null
  return { ...msg, isControl: CONTROL_TYPES.has(msg.type) }
}

export function describeEvent(evt) {
  if (!evt) return ''
  const parts = [evt.type]
  if (evt.symbol) parts.push(evt.symbol)
  if (evt.op) parts.push(`(${evt.op})`)
  return parts.join(' ')
}

export function createLiveConnection({
  url,
  WebSocketImpl = globalThis.WebSocket,
  onStatus = () => {},
  onEvent = () => {},
  reconnectDelayMs = 1000,
  maxReconnectDelayMs = 15000,
  setTimer = (fn, ms) => setTimeout(fn, ms),
  clearTimer = (id) => clearTimeout(id),
}) {
  let socket = null
  let timer = null
  let closed = false
  let delay = reconnectDelayMs

  function connect() {
    timer = null
    onStatus('connecting')
    socket = new WebSocketImpl(url)
    socket.onopen = () => {
      delay = reconnectDelayMs
      onStatus('connected')
    }
    socket.onmessage = (e) => {
      const msg = parseLiveMessage(e.data)
      if (msg && !msg.isControl) onEvent(msg)
    }
    socket.onclose = () => {
      socket = null
      onStatus('disconnected')
      if (!closed) {
        timer = setTimer(connect, delay)
        delay = Math.min(delay * 2, maxReconnectDelayMs)
      }
    }
    // onclose always follows an error; reconnecting is handled there.
    socket.onerror = () => {}
  }

  connect()

  return {
    close() {
      closed = true
      if (timer !== null) clearTimer(timer)
      if (socket) socket.close()
    },
  }
}
