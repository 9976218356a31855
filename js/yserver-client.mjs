// A browser-equivalent Yjs client in Node on a server document (the same providers a web page
// uses), reading and writing mpstore's values with the shipped JavaScript value module.
//   node yserver-client.mjs <values.js> <y-websocket|hocuspocus> <url> <document> <token|-> <json>
// <json>: {"expect": n, "write": {key: "<python repr ignored>"}}: waits until the map holds n
// keys, prints {"values": {key: [typeof, text]}} (decoded with decodeValue, then described), then
// writes the "write" keys with encodeValue and waits until the server has them.
import * as Y from 'yjs'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'

const [valuesPath, dialect, url, document, token, json] = process.argv.slice(2)
const { decodeValue, encodeValue, StoreFloat } = await import(valuesPath)
const job = JSON.parse(json)
const doc = new Y.Doc()
let provider
if (dialect === 'hocuspocus') {
  const websocketProvider = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  provider = new HocuspocusProvider({ websocketProvider, name: document, document: doc, token: token === '-' ? '' : token })
  provider.attach() // a shared websocket provider is attached by hand
} else {
  provider = new WebsocketProvider(url, document, doc, { WebSocketPolyfill: WebSocket })
}
const map = doc.getMap('mpstore')
const deadline = Date.now() + 20000
while (map.size < job.expect) {
  if (Date.now() > deadline) { console.error('timed out with', map.size, 'keys'); process.exit(2) }
  await new Promise((resolve) => setTimeout(resolve, 50))
}
const describe = (v) => {
  if (v instanceof StoreFloat) return ['float', String(v.value)]
  if (v instanceof Uint8Array) return ['bytes', Buffer.from(v).toString('hex')]
  if (typeof v === 'bigint') return ['bigint', v.toString()]
  if (Array.isArray(v)) return ['array', JSON.stringify(v.map(describe))]
  if (v !== null && typeof v === 'object') return ['object', JSON.stringify(Object.entries(v).map(([k, x]) => [k, describe(x)]))]
  return [typeof v, String(v)]
}
const values = {}
for (const [key, text] of map.entries()) values[key] = describe(decodeValue(text))
console.log(JSON.stringify({ values }))
const writes = {
  js_int: 7,
  js_float: new StoreFloat(2),
  js_big: 2n ** 64n,
  js_bytes: new Uint8Array([0, 1, 255]),
  js_nested: { list: [1, 'two', null, true], $dollar: 'kept' }
}
doc.transact(() => { for (const [k, v] of Object.entries(writes)) map.set(k, encodeValue(v)) })
await new Promise((resolve) => setTimeout(resolve, 1500)) // let the update reach the server
provider.destroy()
process.exit(0)
