// Display helpers shared by the views.

export function formatScore(score) {
  return typeof score === 'number' && Number.isFinite(score) ? String(score) : '—'
}

export function formatAliases(aliases) {
  return Array.isArray(aliases) ? aliases.join(', ') : aliases || ''
}

// Evidence detail is free-form JSON from the backend (e.g. {"panel": ..., "instance": ...}).
export function formatDetail(detail) {
  if (detail === null || detail === undefined) return ''
  if (typeof detail !== 'object') return String(detail)
  if (Array.isArray(detail)) return detail.map(formatDetail).join(', ')
  return Object.entries(detail)
    .map(([key, value]) => `${key}: ${value !== null && typeof value === 'object' ? JSON.stringify(value) : value}`)
    .join('; ')
}
