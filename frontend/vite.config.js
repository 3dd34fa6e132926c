import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// Dev server only: forwards API and WebSocket calls to a locally running backend so that the
// relative defaults (/api, /ws) work under `npm run dev` exactly as they do behind nginx.
const backend = process.env.DEV_BACKEND_URL || 'http://127.0.0.1:8000'

export default defineConfig({
  plugins: [vue()],
  server: {
    proxy: {
      '/api': { target: backend, changeOrigin: true },
      '/ws': { target: backend, ws: true, changeOrigin: true },
    },
  },
  test: {
    environment: 'happy-dom',
    // e2e/ holds the node:test browser test; keep vitest away from it.
    include: ['tests/**/*.test.js'],
  },
})
