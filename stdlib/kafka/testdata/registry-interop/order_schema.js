// The input schema of interop.js, as JSON text (written to order.avsc by the test).
module.exports = JSON.stringify(require('./schemas.js').inSchema)
