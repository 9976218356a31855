// A Yjs client in Node: connects (y-websocket or hocuspocus), prints "ready", waits until the
// store map holds n keys or wait seconds passed, prints "size <keys>".
//   node count-client.mjs <y-websocket|hocuspocus> <url> <document> <n> <wait>
import * as Y from 'yjs'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
const [dialect, url, document, n, wait] = process.argv.slice(2)
const doc = new Y.Doc()
let provider
if (dialect === 'hocuspocus') {
  const websocketProvider = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  provider = new HocuspocusProvider({ websocketProvider, name: document, document: doc }); provider.attach()
} else provider = new WebsocketProvider(url, document, doc, { WebSocketPolyfill: WebSocket })
const map = doc.getMap('mpstore')
console.log('ready')
const deadline = Date.now() + Number(wait) * 1000
while (map.size < Number(n) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
console.log('size', map.size)
provider.destroy(); process.exit(0)
