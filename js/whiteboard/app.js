// The mpstore whiteboard page: one Yjs document per board, synced with the mpstore process that
// served the page over y-websocket. Each finished stroke is one store entry `stroke/<id>` holding
// {points, colour, width, author} in mpstore's value encoding; the stroke being drawn and the
// cursor travel as awareness (presence). Bundled by esbuild into mpstore/web/static/whiteboard.js.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { decodeValue, encodeValue } from '../../mpstore/web/static/mpstore-values.js'

const COLOURS = ['#1f2328', '#e03131', '#2f9e44', '#1971c2', '#f08c00', '#9c36b5']
const PREFIX = 'stroke/'
const params = new URLSearchParams(location.search)
const token = params.get('token')
const board = params.get('board') || 'main'
const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('')
const me = params.get('name') || 'page-' + hex(2)
let colour = COLOURS[Math.floor(Math.random() * COLOURS.length)]

const doc = new Y.Doc()
const entries = doc.getMap('mpstore')
const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host
const provider = new WebsocketProvider(wsUrl, 'whiteboard/' + board, doc, {
  params: token ? { token } : {},
  disableBc: true // every tab goes through the mpstore process, like any other participant
})
const awareness = provider.awareness
// Presence is one per mpstore node, shared by every board: states name the board they are on.
awareness.setLocalState({ user: { name: me, color: colour }, board, cursor: null, drawing: null })
const onBoard = (state) => state !== null && typeof state === 'object' && (state.board === undefined || state.board === board)

// -- the strokes ------------------------------------------------------------------------------------
const isStroke = (v) =>
  v !== null && typeof v === 'object' && Array.isArray(v.points) &&
  v.points.every((p) => Array.isArray(p) && p.length >= 2 && p.every((c) => Number.isFinite(Number(c))))

// Decoded strokes by key, kept in step with the map (decoding every stroke per frame is O(n)).
const decoded = new Map()
let sorted = null
const refresh = (key) => {
  sorted = null
  const text = entries.get(key)
  decoded.delete(key)
  if (!key.startsWith(PREFIX) || typeof text !== 'string') return
  let value
  try {
    value = decodeValue(text)
  } catch {
    return // a value that is not ours: hidden, as Python peers do
  }
  if (isStroke(value)) decoded.set(key, { id: key.slice(PREFIX.length), ...value })
}
for (const key of entries.keys()) refresh(key)
entries.observe((event) => event.keysChanged.forEach(refresh))

/** Finished strokes, oldest first (ids start with the time they were made). */
const strokes = () => {
  if (sorted === null) sorted = Array.from(decoded.values()).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return sorted.map((s) => ({ ...s }))
}

const newId = () => Date.now().toString(16).padStart(12, '0') + '-' + hex(3)
const mine = []

const finishStroke = (points) => {
  if (points.length === 0) return
  const id = newId()
  mine.push(id)
  entries.set(PREFIX + id, encodeValue({ points, colour, width: lineWidth(), author: me }))
}

const undoMine = () => {
  while (mine.length > 0) {
    const key = PREFIX + mine.pop()
    if (entries.has(key)) {
      entries.delete(key)
      return
    }
  }
}

const clearBoard = () => {
  doc.transact(() => {
    for (const key of Array.from(entries.keys())) if (key.startsWith(PREFIX)) entries.delete(key)
  })
}

// -- drawing -------------------------------------------------------------------------------------
const canvas = document.getElementById('canvas')
const ctx = canvas.getContext('2d')
const cursorsEl = document.getElementById('cursors')
const widthEl = document.getElementById('width')
const lineWidth = () => Number(widthEl.value)

const drawPath = (points, strokeColour, width, alpha) => {
  if (points.length === 0) return
  ctx.globalAlpha = alpha
  ctx.strokeStyle = strokeColour
  ctx.fillStyle = strokeColour
  ctx.lineWidth = width
  ctx.lineCap = 'round'
  ctx.lineJoin = 'round'
  ctx.beginPath()
  ctx.moveTo(Number(points[0][0]), Number(points[0][1]))
  if (points.length === 1) {
    ctx.arc(Number(points[0][0]), Number(points[0][1]), width / 2, 0, 2 * Math.PI)
    ctx.fill()
  } else {
    for (const p of points.slice(1)) ctx.lineTo(Number(p[0]), Number(p[1]))
    ctx.stroke()
  }
  ctx.globalAlpha = 1
}

const safeColour = (c) => (typeof c === 'string' && /^#[0-9a-fA-F]{3,8}$/.test(c) ? c : '#1f2328')
const safeWidth = (w) => Math.min(Math.max(Number(w) || 1, 0.5), 100)

let current = null
let scheduled = false
const render = () => {
  scheduled = false
  const dpr = window.devicePixelRatio || 1
  const w = canvas.clientWidth
  const h = canvas.clientHeight
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr)
    canvas.height = Math.round(h * dpr)
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0)
  ctx.clearRect(0, 0, w, h)
  if (sorted === null) strokes()
  for (const s of sorted) drawPath(s.points, safeColour(s.colour), safeWidth(s.width), 1)
  cursorsEl.textContent = ''
  for (const [client, state] of awareness.getStates()) {
    if (client === doc.clientID || !onBoard(state)) continue
    const user = state.user !== null && typeof state.user === 'object' ? state.user : {}
    const c = safeColour(user.color)
    const d = state.drawing
    if (d && isStroke(d)) drawPath(d.points, safeColour(d.colour), safeWidth(d.width), 0.5)
    const at = state.cursor
    if (Array.isArray(at) && at.length === 2 && at.every(Number.isFinite)) {
      const el = document.createElement('div')
      el.className = 'cursor'
      el.dataset.client = String(client)
      el.style.left = at[0] + 'px'
      el.style.top = at[1] + 'px'
      el.style.setProperty('--c', c)
      const label = document.createElement('span')
      label.textContent = String(user.name ?? client).slice(0, 40)
      el.appendChild(label)
      cursorsEl.appendChild(el)
    }
  }
  if (current) drawPath(current, colour, lineWidth(), 1)
}
const redraw = () => {
  if (!scheduled) {
    scheduled = true
    requestAnimationFrame(render)
  }
}

// Presence at most ~30 times a second; the last position always goes out.
let presenceTimer = null
let presencePending = {}
const setPresence = (fields) => {
  Object.assign(presencePending, fields)
  if (presenceTimer !== null) return
  presenceTimer = setTimeout(() => {
    presenceTimer = null
    const pending = presencePending
    presencePending = {}
    awareness.setLocalState({ ...awareness.getLocalState(), ...pending })
  }, 33)
}

const at = (e) => {
  const r = canvas.getBoundingClientRect()
  return [Math.round(e.clientX - r.left), Math.round(e.clientY - r.top)]
}

canvas.addEventListener('pointerdown', (e) => {
  if (e.button !== 0) return
  canvas.setPointerCapture(e.pointerId)
  current = [at(e)]
  setPresence({ cursor: current[0], drawing: { points: current, colour, width: lineWidth() } })
  redraw()
})
canvas.addEventListener('pointermove', (e) => {
  const p = at(e)
  if (current) {
    const last = current[current.length - 1]
    if (last[0] !== p[0] || last[1] !== p[1]) current.push(p)
    setPresence({ cursor: p, drawing: { points: current, colour, width: lineWidth() } })
    redraw()
  } else {
    setPresence({ cursor: p })
  }
})
const endStroke = () => {
  if (!current) return
  const points = current
  current = null
  finishStroke(points)
  setPresence({ drawing: null })
  redraw()
}
canvas.addEventListener('pointerup', endStroke)
canvas.addEventListener('pointercancel', endStroke)
canvas.addEventListener('pointerleave', () => setPresence({ cursor: null }))

// -- toolbar -------------------------------------------------------------------------------------
const swatches = document.getElementById('swatches')
for (const c of COLOURS) {
  const b = document.createElement('span')
  b.className = 'swatch' + (c === colour ? ' on' : '')
  b.style.background = c
  b.title = c
  b.addEventListener('click', () => {
    colour = c
    for (const s of swatches.children) s.classList.toggle('on', s === b)
    setPresence({ user: { name: me, color: colour } })
  })
  swatches.appendChild(b)
}
document.getElementById('undo').addEventListener('click', undoMine)
document.getElementById('clear').addEventListener('click', () => {
  if (strokes().length === 0 || window.confirm('Clear every stroke of this board for everyone?')) clearBoard()
})
const boardEl = document.getElementById('board-name')
boardEl.value = board
boardEl.addEventListener('change', () => {
  const name = boardEl.value.trim()
  if (name && name !== board) {
    params.set('board', name)
    location.search = params.toString()
  }
})
const statusEl = document.getElementById('status')
provider.on('status', ({ status }) => {
  statusEl.textContent = status + ' · ' + me
  statusEl.className = status
})
window.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'z') undoMine()
})

entries.observe(redraw)
awareness.on('change', redraw)
window.addEventListener('resize', redraw)
redraw()

// What the tests read (and what a curious user can poke at from the console).
window.whiteboard = {
  board,
  author: me,
  doc,
  provider,
  strokes,
  undoMine,
  clearBoard,
  write: (key, value) => entries.set(key, encodeValue(value)),
  read: (key) => (entries.has(key) ? decodeValue(entries.get(key)) : undefined),
  decode: decodeValue,
  peers: () => Array.from(awareness.getStates())
    .filter(([c, state]) => c !== doc.clientID && onBoard(state))
    .map(([client, state]) => ({ client, ...state }))
}
