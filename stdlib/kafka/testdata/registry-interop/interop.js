// Interoperability check of the kafka avro, protobuf and json_schema
// formats through a schema registry with an independent implementation:
// @kafkajs/confluent-schema-registry (avsc, protobufjs, ajv) over kafkajs.
//
//   node interop.js produce BROKER REGISTRY IN_TOPIC OUT_TOPIC N [FORMAT]
//     registers the input and output schemas (topic name strategy) and
//     produces N records to IN_TOPIC
//   node interop.js check BROKER REGISTRY OUT_TOPIC N [FORMAT]
//     reads N records from OUT_TOPIC, decodes them with the registry and
//     compares every field with what the pipeline must have made of input i
//
// FORMAT is avro (the default), protobuf or json_schema.
const fs = require('fs')
const path = require('path')
const { Kafka, logLevel } = require('kafkajs')
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry')
const assert = require('assert')

const { inSchema, outSchema } = require('./schemas.js')

const text = (name) => fs.readFileSync(path.join(__dirname, name), 'utf8')

// The formats: the schemas registered for the input and output subjects,
// input record i, and the check of output record i (decoded).
const formats = {
  avro: {
    type: SchemaType.AVRO,
    schemas: () => [JSON.stringify(inSchema), JSON.stringify(outSchema)],
    input: (i) => input(i),
    check: (i, v) => checkAvro(i, v),
  },
  protobuf: {
    type: SchemaType.PROTOBUF,
    // order.proto imports interop/line.proto: registered first, a reference
    references: async (registry) => {
      await registry.register({ type: SchemaType.PROTOBUF, schema: text('interop/line.proto') }, { subject: 'interop-line' })
      return [{ name: 'interop/line.proto', subject: 'interop-line', version: 1 }]
    },
    // the output message: the input's in another package, with big
    schemas: () => [text('order.proto'), text('order.proto')
      .replace('package interop;', 'package interop.out;')
      .replace('bytes blob = 11;', 'bytes blob = 11;\n  bool big = 12;')],
    input: (i) => ({
      id: i,
      name: 'n' + i,
      amount: i * 1.25 - 3,
      paid: i % 2 === 0,
      status: i % 3,
      tags: ['t' + i, 'x'],
      line: { sku: 's' + i, qty: i * 2 },
      counts: { a: i, b: 1000000000000 + i },
      ...(i % 3 === 0 ? {} : { note: 'note ' + i }),
      delta: 3 - 2 * i,
      blob: Buffer.from([i, 255, 0]),
    }),
    check: (i, m) => {
      const v = m.$type.toObject(m, { longs: String, enums: String, bytes: Array, defaults: true })
      const want = formats.protobuf.input(i)
      assert.strictEqual(Number(v.id), i, `record ${i} id`)
      assert.strictEqual(v.name, want.name, `record ${i} name`)
      assert.strictEqual(v.amount, want.amount, `record ${i} amount`)
      assert.strictEqual(v.paid, want.paid, `record ${i} paid`)
      assert.strictEqual(v.status, ['NEW', 'PAID', 'SHIPPED'][i % 3], `record ${i} status`)
      assert.deepStrictEqual(v.tags, want.tags, `record ${i} tags`)
      assert.deepStrictEqual(v.line, want.line, `record ${i} line`)
      assert.deepStrictEqual({ a: Number(v.counts.a), b: Number(v.counts.b) }, want.counts, `record ${i} counts`)
      assert.strictEqual(v.note ?? null, want.note ?? null, `record ${i} note`)
      assert.strictEqual(v.delta, want.delta, `record ${i} delta`)
      assert.deepStrictEqual(v.blob, [...want.blob], `record ${i} blob`)
      assert.strictEqual(v.big, i > 5, `record ${i} big`)
    },
  },
  json_schema: {
    type: SchemaType.JSON,
    schemas: () => {
      const out = JSON.parse(text('order.schema.json'))
      out.title = 'interop.out.Order'
      out.properties.big = { type: 'boolean' }
      out.required.push('big')
      out.additionalProperties = false
      return [text('order.schema.json'), JSON.stringify(out)]
    },
    input: (i) => ({
      id: i,
      name: 'n' + i,
      amount: i * 1.25 - 3,
      tags: ['t' + i, 'x'],
      line: { sku: 's' + i, qty: i * 2 },
      note: i % 3 === 0 ? null : 'note ' + i,
    }),
    check: (i, v) => {
      const want = formats.json_schema.input(i)
      assert.strictEqual(v.id, i, `record ${i} id`)
      assert.strictEqual(v.name, want.name, `record ${i} name`)
      assert.strictEqual(v.amount, want.amount, `record ${i} amount`)
      assert.deepStrictEqual(v.tags, want.tags, `record ${i} tags`)
      assert.deepStrictEqual(v.line, want.line, `record ${i} line`)
      assert.strictEqual(v.note ?? null, want.note, `record ${i} note`)
      assert.strictEqual(v.big, i > 5, `record ${i} big`)
    },
  },
}

// input i: decimal amounts as two's-complement unscaled bytes (avsc keeps
// logical types as their underlying values).
function input(i) {
  const cents = BigInt((i % 2 ? -1 : 1) * (i * 1013 + 7))
  return {
    id: i,
    name: 'n' + i,
    amount: unscaled(cents),
    day: 19782 + i,
    at: 1709212455678 + i,
    at_us: 1709212455678901 + i,
    tod: 47655678 + i,
    uid: `6f1c9a52-3f6e-4c59-9b8e-${String(i).padStart(12, '0')}`,
    note: i % 3 === 0 ? null : 'note ' + i,
  }
}

function unscaled(n) {
  const bytes = []
  let v = BigInt.asUintN(64, n)
  for (let k = 0; k < 8; k++) { bytes.unshift(Number(v & 0xffn)); v >>= 8n }
  // shortest two's complement form
  while (bytes.length > 1 && ((bytes[0] === 0 && bytes[1] < 0x80) || (bytes[0] === 0xff && bytes[1] >= 0x80))) bytes.shift()
  return Buffer.from(bytes)
}

function decimalValue(buf) {
  let v = 0n
  for (const b of buf) v = (v << 8n) | BigInt(b)
  if (buf.length && buf[0] & 0x80) v -= 1n << BigInt(8 * buf.length)
  return v
}

// idOf returns a decoded record's id (protobufjs reads an int64 as a Long).
const idOf = (v) => (v.id !== null && typeof v.id === 'object' ? v.id.toNumber() : Number(v.id))

function checkAvro(i, v) {
  const want = input(i)
  assert.strictEqual(Number(v.id), i)
  assert.strictEqual(v.name, want.name)
  assert.strictEqual(decimalValue(v.amount), decimalValue(want.amount), `record ${i} amount`)
  assert.strictEqual(v.day, want.day, `record ${i} day`)
  assert.strictEqual(Number(v.at), want.at, `record ${i} at`)
  assert.strictEqual(Number(v.at_us), want.at_us, `record ${i} at_us`)
  assert.strictEqual(v.tod, want.tod, `record ${i} tod`)
  assert.strictEqual(v.uid, want.uid, `record ${i} uid`)
  assert.deepStrictEqual(v.note, want.note, `record ${i} note`)
  assert.strictEqual(v.big, i > 5, `record ${i} big`)
}

async function main() {
  const [mode, broker, host, ...rest] = process.argv.slice(2)
  const kafka = new Kafka({ brokers: [broker], clientId: 'registry-interop', logLevel: logLevel.NOTHING })
  const registry = new SchemaRegistry({ host })
  if (mode === 'produce') {
    const [inTopic, outTopic, n, name = 'avro'] = rest
    const f = formats[name]
    const [inText, outText] = f.schemas()
    const references = f.references ? await f.references(registry) : undefined
    const { id } = await registry.register({ type: f.type, schema: inText, references }, { subject: `${inTopic}-value` })
    await registry.register({ type: f.type, schema: outText, references }, { subject: `${outTopic}-value` })
    const producer = kafka.producer()
    await producer.connect()
    const messages = []
    for (let i = 0; i < Number(n); i++) {
      messages.push({ key: String(i), value: await registry.encode(id, f.input(i)) })
    }
    await producer.send({ topic: inTopic, messages })
    await producer.disconnect()
    return
  }
  if (mode === 'check') {
    const [outTopic, n, name = 'avro'] = rest
    const f = formats[name]
    const consumer = kafka.consumer({ groupId: 'registry-interop-' + outTopic })
    await consumer.connect()
    await consumer.subscribe({ topic: outTopic, fromBeginning: true })
    const got = new Map()
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out with ${got.size} of ${n} records`)), 60000)
      consumer.run({
        eachMessage: async ({ message }) => {
          const v = await registry.decode(message.value)
          got.set(idOf(v), v)
          if (got.size >= Number(n)) { clearTimeout(timer); resolve() }
        },
      }).catch(reject)
    })
    await consumer.disconnect()
    for (let i = 0; i < Number(n); i++) {
      assert.ok(got.get(i), `record ${i} missing`)
      f.check(i, got.get(i))
    }
    console.log(`ok: ${n} records equal field by field`)
    return
  }
  throw new Error('mode: produce or check')
}

main().catch((e) => { console.error(e); process.exit(1) })
