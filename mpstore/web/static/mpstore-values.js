// mpstore's value encoding in JavaScript (docs/STORE.md, "Values"): one JSON text per store key,
// with one-key tag objects for what JSON cannot say. Round trips with Python's mpstore/_values.py:
//
//   Python            JavaScript (decode gives, encode accepts)
//   None, bool, str   null, boolean, string
//   int (any size)    number when |n| <= 2**53 - 1, else BigInt; encode also takes any BigInt
//   float             number when not integral; StoreFloat when integral (3.0, -0.0) so that it
//                     stays a float; NaN and +-Infinity are numbers (and floats)
//   bytes             Uint8Array
//   list, dict        Array, plain object (a JS object lists integer-like keys first)
//
// A JS number is written as an int when Number.isInteger says so, else as a float: wrap an
// integral value in StoreFloat to write a float. Decoding is strict, like Python's: text that
// is not JSON, or an object with an unknown "$" key, throws ValueDecodeError.

const SAFE = 2n ** 53n - 1n
const TAGS = new Set(['$b', '$i', '$f'])

/** An integral float (3.0, -0.0): a number that must stay a float in Python. */
export class StoreFloat {
  constructor (value) {
    this.value = Number(value)
  }

  valueOf () {
    return this.value
  }

  toString () {
    return floatText(this.value)
  }
}

/** A stored string that is not a value this encoding writes. */
export class ValueDecodeError extends Error {}

const floatText = (x) => {
  if (Object.is(x, -0)) return '-0.0'
  const s = String(x)
  return /[.e]/.test(s) ? s : s + '.0'
}

const toBase64 = (bytes) => {
  let bin = ''
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000))
  }
  return btoa(bin)
}

const fromBase64 = (s) => {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) {
    throw new ValueDecodeError('bad base64 in $b')
  }
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0))
}

const bigText = (n) => (n < 0n ? '-' + (-n).toString(16) : n.toString(16))

const encodeInt = (n) => (n >= -SAFE && n <= SAFE ? n.toString() : '{"$i":"' + bigText(n) + '"}')

const encodeNumber = (x, float) => {
  if (Number.isNaN(x)) return '{"$f":"NaN"}'
  if (x === Infinity) return '{"$f":"Infinity"}'
  if (x === -Infinity) return '{"$f":"-Infinity"}'
  if (!float && Number.isInteger(x) && !Object.is(x, -0)) return encodeInt(BigInt(x))
  return floatText(x)
}

const encodeAny = (v, path) => {
  if (v === null) return 'null'
  switch (typeof v) {
    case 'boolean': return v ? 'true' : 'false'
    case 'string': return JSON.stringify(v)
    case 'number': return encodeNumber(v, false)
    case 'bigint': return encodeInt(v)
  }
  if (v instanceof StoreFloat) return encodeNumber(v.value, true)
  if (v instanceof Uint8Array) return '{"$b":"' + toBase64(v) + '"}'
  if (typeof v !== 'object') throw new TypeError('store values cannot hold a ' + typeof v)
  if (path.includes(v)) throw new TypeError('store values cannot contain themselves (a cycle)')
  path.push(v)
  try {
    if (Array.isArray(v)) {
      const items = []
      // A sparse array's holes are skipped by map(); JSON has nothing to say for them.
      for (let i = 0; i < v.length; i++) {
        if (!(i in v)) throw new TypeError('store values cannot hold an empty array slot (index ' + i + ')')
        items.push(encodeAny(v[i], path))
      }
      return '[' + items.join(',') + ']'
    }
    const proto = Object.getPrototypeOf(v)
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError('store values hold plain objects only, not ' + (v.constructor?.name ?? 'this'))
    }
    const parts = []
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) throw new TypeError('store values cannot hold undefined (key ' + k + ')')
      parts.push(JSON.stringify(k.startsWith('$') ? '$' + k : k) + ':' + encodeAny(x, path))
    }
    return '{' + parts.join(',') + '}'
  } finally {
    path.pop()
  }
}

/** The stored string for `value`; TypeError for anything the encoding cannot carry exactly. */
export const encodeValue = (value) => {
  if (value === undefined) throw new TypeError('store values cannot be undefined')
  return encodeAny(value, [])
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y

// A strict JSON reader that keeps what JSON.parse loses: int vs float, and ints of any size.
class Reader {
  constructor (text) {
    this.s = text
    this.i = 0
  }

  fail (what) {
    throw new ValueDecodeError('not a stored value: ' + what + ' at ' + this.i)
  }

  ws () {
    const s = this.s
    while (this.i < s.length && ' \t\n\r'.includes(s[this.i])) this.i++
  }

  value (depth) {
    if (depth > 1000) this.fail('nested too deeply')
    this.ws()
    const c = this.s[this.i]
    if (c === '{') return this.object(depth)
    if (c === '[') return this.array(depth)
    if (c === '"') return this.string()
    if (c === '-' || (c >= '0' && c <= '9')) return this.number()
    for (const [word, v] of [['null', null], ['true', true], ['false', false]]) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length
        return v
      }
    }
    this.fail('unexpected ' + (c === undefined ? 'end' : JSON.stringify(c)))
  }

  number () {
    NUMBER.lastIndex = this.i
    const m = NUMBER.exec(this.s)
    if (m === null) this.fail('bad number')
    this.i += m[0].length
    if (m[1] === undefined && m[2] === undefined) {
      const n = BigInt(m[0])
      return n >= -SAFE && n <= SAFE ? Number(n) : n
    }
    const x = Number(m[0])
    return Number.isInteger(x) || Object.is(x, -0) ? new StoreFloat(x) : x
  }

  string () {
    STRING.lastIndex = this.i
    const m = STRING.exec(this.s)
    if (m === null) this.fail('bad string')
    this.i += m[0].length
    return JSON.parse(m[0])
  }

  array (depth) {
    this.i++
    const out = []
    this.ws()
    if (this.s[this.i] === ']') {
      this.i++
      return out
    }
    for (;;) {
      out.push(this.value(depth + 1))
      this.ws()
      const c = this.s[this.i++]
      if (c === ']') return out
      if (c !== ',') this.fail('expected , or ]')
    }
  }

  object (depth) {
    this.i++
    const pairs = []
    this.ws()
    if (this.s[this.i] === '}') {
      this.i++
    } else {
      for (;;) {
        this.ws()
        if (this.s[this.i] !== '"') this.fail('expected a key')
        const k = this.string()
        this.ws()
        if (this.s[this.i++] !== ':') this.fail('expected :')
        pairs.push([k, this.value(depth + 1)])
        this.ws()
        const c = this.s[this.i++]
        if (c === '}') break
        if (c !== ',') this.fail('expected , or }')
      }
    }
    if (pairs.length === 1 && TAGS.has(pairs[0][0])) return tag(pairs[0][0], pairs[0][1])
    const out = {}
    for (let [k, v] of pairs) {
      if (k.startsWith('$')) {
        if (!k.startsWith('$$')) throw new ValueDecodeError('unknown tag or unescaped key ' + k)
        k = k.slice(1)
      }
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
    }
    return out
  }
}

const FLOATS = { NaN, Infinity, '-Infinity': -Infinity }

const tag = (name, arg) => {
  if (typeof arg !== 'string') throw new ValueDecodeError('tag ' + name + ' needs a string argument')
  if (name === '$b') return fromBase64(arg)
  if (name === '$i') {
    const neg = arg.startsWith('-')
    const digits = neg ? arg.slice(1) : arg
    if (!/^[0-9a-f]+$/.test(digits)) throw new ValueDecodeError('bad hex in $i')
    const n = neg ? -BigInt('0x' + digits) : BigInt('0x' + digits)
    return n >= -SAFE && n <= SAFE ? Number(n) : n
  }
  if (!Object.prototype.hasOwnProperty.call(FLOATS, arg)) throw new ValueDecodeError('unknown $f value ' + arg)
  return FLOATS[arg]
}

/** The value a stored string holds; ValueDecodeError if it is not one this encoding writes. */
export const decodeValue = (text) => {
  if (typeof text !== 'string') throw new ValueDecodeError('a stored value is a string')
  const r = new Reader(text)
  const v = r.value(0)
  r.ws()
  if (r.i !== text.length) r.fail('trailing text')
  return v
}
