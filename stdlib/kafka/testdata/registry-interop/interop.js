// Interoperability check of the kafka avro format with an independent
// implementation: @kafkajs/confluent-schema-registry (avsc) over kafkajs.
//
//   node interop.js produce BROKER REGISTRY IN_TOPIC OUT_TOPIC N
//     registers the input and output schemas (topic name strategy) and
//     produces N records to IN_TOPIC
//   node interop.js check BROKER REGISTRY OUT_TOPIC N
//     reads N records from OUT_TOPIC, decodes them with the registry and
//     compares every field with what the pipeline must have made of input i
const { Kafka, logLevel } = require('kafkajs')
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry')
const assert = require('assert')

const { inSchema, outSchema } = require('./schemas.js')

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

async function main() {
  const [mode, broker, host, ...rest] = process.argv.slice(2)
  const kafka = new Kafka({ brokers: [broker], clientId: 'registry-interop', logLevel: logLevel.NOTHING })
  const registry = new SchemaRegistry({ host })
  if (mode === 'produce') {
    const [inTopic, outTopic, n] = rest
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(inSchema) }, { subject: `${inTopic}-value` })
    await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(outSchema) }, { subject: `${outTopic}-value` })
    const producer = kafka.producer()
    await producer.connect()
    const messages = []
    for (let i = 0; i < Number(n); i++) {
      messages.push({ key: String(i), value: await registry.encode(id, input(i)) })
    }
    await producer.send({ topic: inTopic, messages })
    await producer.disconnect()
    return
  }
  if (mode === 'check') {
    const [outTopic, n] = rest
    const consumer = kafka.consumer({ groupId: 'registry-interop-' + outTopic })
    await consumer.connect()
    await consumer.subscribe({ topic: outTopic, fromBeginning: true })
    const got = new Map()
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out with ${got.size} of ${n} records`)), 60000)
      consumer.run({
        eachMessage: async ({ message }) => {
          const v = await registry.decode(message.value)
          got.set(Number(v.id), v)
          if (got.size >= Number(n)) { clearTimeout(timer); resolve() }
        },
      }).catch(reject)
    })
    await consumer.disconnect()
    for (let i = 0; i < Number(n); i++) {
      const want = input(i)
      const v = got.get(i)
      assert.ok(v, `record ${i} missing`)
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
    console.log(`ok: ${n} records equal field by field`)
    return
  }
  throw new Error('mode: produce or check')
}

main().catch((e) => { console.error(e); process.exit(1) })
