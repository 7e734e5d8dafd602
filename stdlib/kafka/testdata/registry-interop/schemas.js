// The schemas interop.js registers.
const fields = [
  { name: 'id', type: 'long' },
  { name: 'name', type: 'string' },
  { name: 'amount', type: { type: 'bytes', logicalType: 'decimal', precision: 9, scale: 2 } },
  { name: 'day', type: { type: 'int', logicalType: 'date' } },
  { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } },
  { name: 'at_us', type: { type: 'long', logicalType: 'timestamp-micros' } },
  { name: 'tod', type: { type: 'int', logicalType: 'time-millis' } },
  { name: 'uid', type: { type: 'string', logicalType: 'uuid' } },
  { name: 'note', type: ['null', 'string'], default: null },
]
const inSchema = { type: 'record', name: 'Order', namespace: 'registry', fields }
const outSchema = {
  type: 'record', name: 'Order', namespace: 'registry.out',
  fields: [...fields, { name: 'big', type: 'boolean' }],
}

module.exports = { inSchema, outSchema }
