package compiler

import (
	"fmt"
	"slices"

	"pipe.dev/pipe/lang"
)

// Suggest returns `did you mean "x"?` for the candidate closest to name, or
// "" when none is close enough.
func Suggest(name string, candidates []string) string { return suggest(name, candidates) }

// suggest returns `did you mean "x"?` for the candidate closest to name, or
// "" when none is close enough.
func suggest(name string, candidates []string) string {
	best, bestD := "", -1
	cands := slices.Clone(candidates)
	slices.Sort(cands)
	for _, c := range cands {
		if c == name {
			continue
		}
		d := lang.EditDistance(name, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, len(name)/3)
	if bestD < 0 || bestD > limit {
		return ""
	}
	return fmt.Sprintf("did you mean %q?", best)
}
