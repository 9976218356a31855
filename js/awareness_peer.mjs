// A y-protocols Awareness driven over stdin/stdout, one JSON command per line, for the interop
// tests: the real awareness.js reads what mpstore writes and writes what mpstore reads.
import * as Y from 'yjs'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as readline from 'node:readline'

const doc = new Y.Doc()
doc.clientID = Number(process.argv[2] || 4242)
const awareness = new awarenessProtocol.Awareness(doc)
awareness.setLocalState(null)
const hex = (u8) => Buffer.from(u8).toString('hex')
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'))

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = JSON.parse(line)
  let reply = {}
  try {
    if (cmd.op === 'apply') {
      awarenessProtocol.applyAwarenessUpdate(awareness, unhex(cmd.update), 'mpstore')
    } else if (cmd.op === 'set') {
      awareness.setLocalState(cmd.state)
    } else if (cmd.op === 'field') {
      awareness.setLocalStateField(cmd.field, cmd.value)
    } else if (cmd.op === 'remove') {
      awarenessProtocol.removeAwarenessStates(awareness, cmd.clients, 'test')
    } else if (cmd.op === 'quit') {
      awareness.destroy()
      rl.close()
      return
    }
    const clients = cmd.encode || [doc.clientID]
    const states = {}
    const clocks = {}
    awareness.getStates().forEach((state, client) => { states[client] = state })
    awareness.meta.forEach((meta, client) => { clocks[client] = meta.clock })
    reply = {
      states,
      clocks,
      update: clients.every((c) => awareness.meta.has(c)) ? hex(awarenessProtocol.encodeAwarenessUpdate(awareness, clients)) : null
    }
  } catch (e) {
    reply = { error: String(e) }
  }
  process.stdout.write(JSON.stringify(reply) + '\n')
})
rl.on('close', () => { awareness.destroy(); process.exit(0) })
