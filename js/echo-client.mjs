// A Yjs client in Node that echoes a store: it waits until the map holds `expect` keys, decodes
// each with the shipped value module, writes it back encoded under "echo/<key>", deletes the keys
// in `delete`, and waits until the other side acknowledges with the key "done".
//   node echo-client.mjs <values.js> <y-websocket|hocuspocus> <url> <document> <json>
// <json>: {"expect": n, "delete": [key, ...]}
import * as Y from 'yjs'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'

const [valuesPath, dialect, url, document, json] = process.argv.slice(2)
const { decodeValue, encodeValue } = await import(valuesPath)
const job = JSON.parse(json)
const doc = new Y.Doc()
let provider
if (dialect === 'hocuspocus') {
  const websocketProvider = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  provider = new HocuspocusProvider({ websocketProvider, name: document, document: doc })
  provider.attach()
} else {
  provider = new WebsocketProvider(url, document, doc, { WebSocketPolyfill: WebSocket, params: job.params || {} })
}
const map = doc.getMap('mpstore')
const waitFor = async (cond, what) => {
  const deadline = Date.now() + 30000
  while (!cond()) {
    if (Date.now() > deadline) { console.error('timed out waiting for', what, [...map.keys()]); process.exit(2) }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
const originals = () => [...map.keys()].filter((k) => !k.startsWith('echo/') && k !== 'done')
await waitFor(() => originals().length >= job.expect, 'originals')
doc.transact(() => {
  for (const key of originals()) map.set('echo/' + key, encodeValue(decodeValue(map.get(key))))
  for (const key of job.delete || []) map.delete(key)
})
await waitFor(() => map.has('done'), 'done')
provider.destroy()
process.exit(0)
