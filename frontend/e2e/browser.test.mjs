// End-to-end browser test: the built app served by nginx, talking to the real backend and
// database. Run by scripts/test-nginx.sh, which starts the stack and sets:
//   E2E_BASE_URL            page to open, e.g. http://127.0.0.1:PORT/
//   E2E_TRIGGER_CMD         shell command that changes PKD1 in the database (fires a NOTIFY)
//   E2E_SCREENSHOT          where to save a screenshot for humans (optional)
//   E2E_EXPECT_ENVIRONMENT  ENVIRONMENT value the entrypoint wrote into env-config.js (optional)
//   CHROMIUM_PATH           default /usr/bin/chromium (Debian's package; playwright's own
//                           browser downloads cannot work offline)
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { chromium } from 'playwright-core'

const baseUrl = process.env.E2E_BASE_URL
const triggerCmd = process.env.E2E_TRIGGER_CMD
const screenshotPath = process.env.E2E_SCREENSHOT
const expectedEnvironment = process.env.E2E_EXPECT_ENVIRONMENT
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium'

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

let context
let page
let userDataDir
const problems = []

before(async () => {
  assert.ok(baseUrl, 'E2E_BASE_URL is not set: run scripts/test-nginx.sh, which starts the stack and sets it')
  assert.ok(triggerCmd, 'E2E_TRIGGER_CMD is not set: run scripts/test-nginx.sh, which sets it')
  userDataDir = mkdtempSync(join(tmpdir(), 'kgdb-chromium-'))
  // A persistent context is how playwright takes an explicit --user-data-dir; the directory is
  // fresh, so nothing leaks in from an earlier run.
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 800 },
  })
  page = context.pages()[0] || (await context.newPage())
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`)
  })
})

after(async () => {
  await context?.close()
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true })
})

test('gene table loads through nginx with the runtime config', async () => {
  await page.goto(baseUrl)
  await page.locator('[data-testid="gene-row"][data-symbol="PKD1"]').waitFor({ timeout: 15000 })
  const symbols = await page.locator('[data-testid="gene-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.symbol))
  assert.ok(symbols.length > 1, `expected several genes, got ${JSON.stringify(symbols)}`)
  assert.deepEqual([...symbols].sort(), symbols, 'rows are not sorted by symbol')
  const env = await page.evaluate(() => window._env_)
  assert.equal(env?.API_BASE_URL, '/api', 'window._env_ missing: /env-config.js did not run before the bundle')
  if (expectedEnvironment) {
    assert.equal(env.ENVIRONMENT, expectedEnvironment)
    assert.equal((await page.getByTestId('environment').textContent()).trim(), expectedEnvironment)
  }
})

test('debounced search filters the table', async () => {
  await page.getByTestId('search').fill('col4')
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid="gene-row"]')]
    return rows.length > 0 && rows.every((r) => r.dataset.symbol.startsWith('COL4'))
  }, null, { timeout: 10000 })
  await page.getByTestId('search').fill('')
  await page.locator('[data-testid="gene-row"][data-symbol="PKD1"]').waitFor({ timeout: 10000 })
})

test('live indicator connects and shows a database change', async () => {
  await page.locator('[data-testid="live-indicator"][data-status="connected"]').waitFor({ timeout: 15000 })
  const refetch = page.waitForResponse((r) => r.url().includes('/api/genes?') && r.status() === 200, { timeout: 15000 })
  execSync(triggerCmd, { stdio: 'inherit', shell: '/bin/sh', timeout: 15000 })
  const lastEvent = page.getByTestId('live-last-event')
  await lastEvent.waitFor({ timeout: 15000 })
  await page.waitForFunction(
    () => /gene_updated PKD1/.test(document.querySelector('[data-testid="live-last-event"]')?.textContent || ''),
    null,
    { timeout: 15000 },
  )
  // The event makes the list reload from the API.
  await refetch
  if (screenshotPath) {
    mkdirSync(dirname(screenshotPath), { recursive: true })
    await page.screenshot({ path: screenshotPath, fullPage: true })
  }
})

test('gene detail shows evidence, also when opened directly (SPA fallback)', async () => {
  await page.locator('[data-testid="gene-row"][data-symbol="PKD1"] a').click()
  await page.getByTestId('gene-symbol').waitFor({ timeout: 10000 })
  assert.equal(new URL(page.url()).pathname, '/genes/PKD1')
  assert.ok((await page.getByTestId('evidence-item').count()) > 0, 'PKD1 shows no evidence')

  await page.goto(new URL('/genes/PKD1', baseUrl).href)
  await page.getByTestId('gene-symbol').waitFor({ timeout: 10000 })
  assert.equal((await page.getByTestId('gene-symbol').textContent()).trim(), 'PKD1')
})

test('no page errors, console errors or CSP violations', () => {
  assert.deepEqual(problems, [])
})
