// A Hocuspocus server for mpstore stores: token auth, and persistence to one file per document.
//   npm install @hocuspocus/server@4.7.0 yjs
//   TOKEN=s3cret DATA_DIR=./data PORT=1234 node hocuspocus-server.mjs
// Env: HOST (default 127.0.0.1), PORT (0 = any free port), TOKEN (unset = no auth),
// DATA_DIR (unset = memory only), DEBOUNCE (ms from the last edit to a save; default 2000). Prints {"listening": <port>} once it accepts connections.
import { Server } from '@hocuspocus/server'
import * as Y from 'yjs'
import fs from 'node:fs'
import path from 'node:path'

const dir = process.env.DATA_DIR
const fileOf = (name) => path.join(dir, encodeURIComponent(name) + '.ydoc')

const server = new Server({
  address: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 0),
  quiet: true,
  debounce: Number(process.env.DEBOUNCE || 2000),
  async onAuthenticate ({ token }) {
    if (process.env.TOKEN && token !== process.env.TOKEN) throw new Error('wrong token')
  },
  async onLoadDocument ({ documentName }) {
    if (dir && fs.existsSync(fileOf(documentName))) return new Uint8Array(fs.readFileSync(fileOf(documentName)))
  },
  async onStoreDocument ({ documentName, document }) {
    if (!dir) return
    const tmp = fileOf(documentName) + '.tmp' // write whole, then rename: a crash leaves the old file
    fs.writeFileSync(tmp, Y.encodeStateAsUpdate(document))
    fs.renameSync(tmp, fileOf(documentName))
  }
})
await server.listen()
console.log(JSON.stringify({ listening: server.address.port }))
