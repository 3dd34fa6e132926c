// Runtime configuration. window._env_ (written by docker-entrypoint.sh into /env-config.js)
// wins over build-time VITE_* values, so one image serves every environment.

export const DEFAULTS = Object.freeze({
  API_BASE_URL: '/api',
  WS_URL: '/ws',
  ENVIRONMENT: 'production',
})

export function resolveConfig(runtimeEnv, buildEnv = {}) {
  const pick = (key) => runtimeEnv?.[key] || buildEnv[`VITE_${key}`] || DEFAULTS[key]
  return {
    apiBaseUrl: stripTrailingSlash(pick('API_BASE_URL')),
    wsUrl: stripTrailingSlash(pick('WS_URL')),
    environment: pick('ENVIRONMENT'),
  }
}

// Browsers only accept absolute ws(s):// URLs, while the config may say "/ws" (same origin,
// behind nginx) or an http(s) URL; normalise all of these to the events endpoint.
export function resolveWsEventsUrl(wsUrl, location) {
  const base = stripTrailingSlash(wsUrl)
  const secure = location.protocol === 'https:'
  let absolute
  if (/^wss?:\/\//i.test(base)) {
    absolute = base
  } else if (/^https?:\/\//i.test(base)) {
    absolute = base.replace(/^http/i, 'ws')
  } else if (base.startsWith('//')) {
    absolute = `${secure ? 'wss:' : 'ws:'}${base}`
  } else {
    const path = base.startsWith('/') ? base : `/${base}`
    absolute = `${secure ? 'wss:' : 'ws:'}//${location.host}${path}`
  }
  return `${absolute}/events`
}

function stripTrailingSlash(value) {
  const s = String(value)
  return s.length > 1 ? s.replace(/\/+$/, '') : s
}

export const config = resolveConfig(
  typeof window !== 'undefined' ? window._env_ : undefined,
  import.meta.env,
)
