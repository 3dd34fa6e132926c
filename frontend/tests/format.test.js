import { describe, expect, it } from 'vitest'
import { formatAliases, formatDetail, formatScore } from '../src/format.js'

describe('format helpers', () => {
  it('formats scores, keeping integers as they are', () => {
    expect(formatScore(7)).toBe('7')
    expect(formatScore(0)).toBe('0')
    expect(formatScore(null)).toBe('—')
    expect(formatScore(Number.NaN)).toBe('—')
  })

  it('joins aliases', () => {
    expect(formatAliases(['PBP', 'TRPP1'])).toBe('PBP, TRPP1')
    expect(formatAliases([])).toBe('')
    expect(formatAliases(null)).toBe('')
  })

  it('renders JSON evidence detail readably', () => {
    expect(formatDetail({ panel: 'Cystic kidney disease', instance: 'Genomics England' })).toBe(
      'panel: Cystic kidney disease; instance: Genomics England',
    )
    expect(formatDetail({ hpo: ['HP:0000107'], n: 2 })).toBe('hpo: ["HP:0000107"]; n: 2')
    expect(formatDetail('plain text')).toBe('plain text')
    expect(formatDetail(null)).toBe('')
  })
})
