package compiler

import (
	"fmt"
	"slices"
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
		d := editDistance(name, c)
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

// editDistance is the optimal string alignment distance between a and b
// (Levenshtein with adjacent transpositions).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
