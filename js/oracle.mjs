// The Yjs oracle: real JavaScript Yjs replicas driven over JSON lines on stdin/stdout.
//
// Each request is one line {"id": n, "op": name, ...}; each answer is one line
// {"id": n, "ok": true, ...} or {"id": n, "ok": false, "error": text}. Bytes travel as hex.
// Documents are named by the caller; each holds the root map "mpstore" (mpstore's ROOT_MAP).
// Values are compared bit for bit: an entry is reported as its lib0 Any encoding.
// Used by tests/yjs/oracle.py; it reads stdin until EOF and never touches the network.

import * as readline from 'node:readline'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

// stdout carries answers only: Yjs's own messages (console.log/warn) go to stderr.
const toStderr = (...args) => process.stderr.write(args.map(String).join(' ') + '\n')
console.log = toStderr
console.warn = toStderr
console.info = toStderr
console.debug = toStderr

const ROOT_MAP = 'mpstore'
const docs = new Map()

const hex = (bytes) => Buffer.from(bytes).toString('hex')
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'))

const getDoc = (name) => {
  const doc = docs.get(name)
  if (doc === undefined) throw new Error(`no document ${name}`)
  return doc
}

// One transaction's update, or "" when it changed nothing (as mpstore's engines report it).
const captured = (doc, fn) => {
  const updates = []
  const listener = (update) => updates.push(update)
  doc.on('update', listener)
  try {
    doc.transact(fn)
  } finally {
    doc.off('update', listener)
  }
  return updates.length === 0 ? '' : hex(updates.length === 1 ? updates[0] : Y.mergeUpdates(updates))
}

const encodeAny = (value) => {
  if (value instanceof Y.AbstractType) return `type:${value.constructor.name}`
  const encoder = encoding.createEncoder()
  encoding.writeAny(encoder, value)
  return hex(encoding.toUint8Array(encoder))
}

const entries = (doc) => {
  const out = {}
  doc.getMap(ROOT_MAP).forEach((value, key) => { out[key] = encodeAny(value) })
  return out
}

const syncMessage = (write) => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0) // y-protocols message type "sync", as y-websocket frames it
  write(encoder)
  return hex(encoding.toUint8Array(encoder))
}

const ops = {
  new: ({ doc, client }) => {
    const d = new Y.Doc({ gc: true })
    if (client !== undefined && client !== null) d.clientID = client
    d.getMap(ROOT_MAP)
    docs.set(doc, d)
    return { client: d.clientID }
  },
  drop: ({ doc }) => {
    getDoc(doc).destroy()
    docs.delete(doc)
    return {}
  },
  transact: ({ doc, sets, deletes }) => {
    const d = getDoc(doc)
    const map = d.getMap(ROOT_MAP)
    return {
      update: captured(d, () => {
        for (const key of deletes ?? []) if (map.has(key)) map.delete(key)
        for (const [key, value] of Object.entries(sets ?? {})) map.set(key, value)
      })
    }
  },
  // Set one foreign value given as its lib0 Any encoding (BigInt, -0, undefined, objects...).
  set_any: ({ doc, key, any }) => {
    const d = getDoc(doc)
    const value = decoding.readAny(decoding.createDecoder(unhex(any)))
    return { update: captured(d, () => d.getMap(ROOT_MAP).set(key, value)) }
  },
  apply: ({ doc, update }) => {
    Y.applyUpdate(getDoc(doc), unhex(update))
    return {}
  },
  state: ({ doc }) => {
    const d = getDoc(doc)
    return {
      sv: hex(Y.encodeStateVector(d)),
      entries: entries(d),
      pending: d.store.pendingStructs !== null || d.store.pendingDs !== null
    }
  },
  diff: ({ doc, sv }) => ({ update: hex(Y.encodeStateAsUpdate(getDoc(doc), sv ? unhex(sv) : undefined)) }),
  merge: ({ updates }) => ({ update: hex(Y.mergeUpdates(updates.map(unhex))) }),
  update_sv: ({ update }) => ({ sv: hex(Y.encodeStateVectorFromUpdate(unhex(update))) }),
  // y-protocols/sync, framed as y-websocket does (message type 0 first)
  step1: ({ doc }) => ({ message: syncMessage((e) => syncProtocol.writeSyncStep1(e, getDoc(doc))) }),
  step2: ({ doc, sv }) => ({
    message: syncMessage((e) => syncProtocol.writeSyncStep2(e, getDoc(doc), sv ? unhex(sv) : undefined))
  }),
  update_message: ({ update }) => ({ message: syncMessage((e) => syncProtocol.writeUpdate(e, unhex(update))) }),
  // Handle one framed sync message as y-websocket's provider does; answer the reply, or "".
  read: ({ doc, message }) => {
    const decoder = decoding.createDecoder(unhex(message))
    const type = decoding.readVarUint(decoder)
    if (type !== 0) throw new Error(`not a sync message: type ${type}`)
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 0)
    const kind = syncProtocol.readSyncMessage(decoder, encoder, getDoc(doc), 'oracle')
    if (decoding.hasContent(decoder)) throw new Error('trailing bytes after the sync message')
    return { kind, reply: encoding.length(encoder) > 1 ? hex(encoding.toUint8Array(encoder)) : '' }
  },
  versions: () => ({ node: process.version })
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  if (!line.trim()) return
  let id = null
  let answer
  try {
    const request = JSON.parse(line)
    id = request.id
    const op = ops[request.op]
    if (op === undefined) throw new Error(`unknown op ${request.op}`)
    answer = { id, ok: true, ...op(request) }
  } catch (err) {
    answer = { id, ok: false, error: String(err && err.stack ? err.stack : err) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
})
lines.on('close', () => process.exit(0))
