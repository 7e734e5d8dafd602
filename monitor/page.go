package monitor

import (
	_ "embed"
	"net/http"
)

//go:embed page.html
var pageHTML []byte

// page serves the status page: static HTML and script that draw /graph.svg
// and poll /status (with the token from the URL's #token=… fragment,
// which the browser never sends to the server).
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	w.Write(pageHTML)
}

func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "image/svg+xml")
	DrawSVG(w, s.p)
}
