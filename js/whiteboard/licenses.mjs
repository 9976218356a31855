// Writes the licences of the packages bundled into whiteboard.js next to it (MIT asks for them).
import { readFileSync, writeFileSync } from 'node:fs'

const packages = ['yjs', 'y-websocket', 'y-protocols', 'lib0']
const out = process.argv[2] ?? '../mpstore/web/static/whiteboard-licenses.txt'
const parts = packages.map((name) => {
  const { version } = JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8'))
  return `${name} ${version}\n\n${readFileSync(`node_modules/${name}/LICENSE`, 'utf8').trim()}\n`
})
writeFileSync(out, 'whiteboard.js bundles these packages (esbuild, from js/package-lock.json):\n\n' + parts.join('\n---\n\n'))
