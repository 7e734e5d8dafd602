// Package monitor is the HTTP server of a running pipeline: Prometheus
// metrics, health and readiness, status, positions, control, and a status
// page with the stage graph.
//
// Phase: run time, beside exec. Input: a [plan.Plan] and the [exec.Handle]
// of its run. Output: answers over HTTP; control requests go to the handle.
//
//	GET  /          the status page (embedded; no build step)
//	GET  /graph.svg the stage graph, as `pipe graph --format svg` draws it
//	GET  /metrics   Prometheus text or OpenMetrics (see Metrics in spec §9.5)
//	GET  /health    200 while the run is healthy, else 503 with the reasons
//	GET  /ready     200 once every component is open and the run goes on
//	GET  /status    the run as JSON (Status)
//	GET  /offsets   the held positions, as `pipe offsets show --format json`
//	POST /pause, /resume, /checkpoint, /stop
//
// With a token every path but /, /health and /ready needs the header
// "Authorization: Bearer TOKEN". No answer holds a secret: the plan keeps
// them symbolic and every error text is redacted by the run.
package monitor
