package lang

import (
	"encoding/json"
	"io"
)

// jsonDiagnostic is one entry of the versioned JSON diagnostics format
// (`pipe check --format json`, and a cluster's answer to a broken pipeline).
// Fields may be added, never renamed.
type jsonDiagnostic struct {
	Code     string    `json:"code"`
	Name     string    `json:"name"`
	Severity string    `json:"severity"`
	File     string    `json:"file"`
	Start    Pos       `json:"start"`
	End      Pos       `json:"end"`
	Message  string    `json:"message"`
	Detail   string    `json:"detail,omitempty"`
	Related  []Related `json:"related,omitempty"`
}

// WriteJSON writes ds in the versioned JSON diagnostics format: an object
// with "version" 1 and "diagnostics", a list (empty, never null).
func WriteJSON(w io.Writer, ds Diagnostics) error {
	out := struct {
		Version     int              `json:"version"`
		Diagnostics []jsonDiagnostic `json:"diagnostics"`
	}{Version: 1, Diagnostics: []jsonDiagnostic{}}
	for _, d := range ds {
		out.Diagnostics = append(out.Diagnostics, jsonDiagnostic{
			Code: d.Code.String(), Name: d.Code.Name(), Severity: d.Severity.String(),
			File: d.Span.File, Start: d.Span.Start, End: d.Span.End,
			Message: d.Message, Detail: d.Detail, Related: d.Related,
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
