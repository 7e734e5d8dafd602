package cluster

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// InstanceID names one instance of a pipeline: "NAME/INDEX", INDEX from 0
// to the pipeline's `instances` - 1.
func InstanceID(pipeline string, index int) string {
	return pipeline + "/" + strconv.Itoa(index)
}

// splitInstance returns the pipeline and index of an instance id.
func splitInstance(id string) (string, int) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return id, 0
	}
	n, _ := strconv.Atoi(id[i+1:])
	return id[:i], n
}

// holder is what the leader knows of one member when it assigns: its id
// and the instances it runs now (from its join metadata).
type holder struct {
	ID      string
	Running []string
}

// decision is the leader's decision for one generation.
type decision struct {
	Assigned map[string][]string // member → instances it runs in this generation
	Revoked  map[string][]string // member → instances it must stop, then rejoin
}

// assign is the leader's assignor: balanced and sticky, in two phases.
//
// Every member keeps what it runs, up to its quota: with n instances over
// k members, the n%k members that hold the most get ⌈n/k⌉, the others
// ⌊n/k⌋. What a member holds beyond its quota is revoked, not given to
// another member in the same generation: the member stops it and rejoins,
// and in the next generation it is free and goes to a member under its
// quota. So an instance never runs on two members that both believe they
// own it, and instances that stay put are never stopped. An instance
// nobody runs (new, or its member died) goes to the member furthest under
// its quota. An instance run by two members (a member that was cut off
// and came back) is kept by the first in member order and revoked from
// the other; one that no longer exists is revoked.
//
// Instances of one pipeline are spread: a free instance goes to a member
// that runs no other instance of its pipeline. When every member with room
// runs one, a member that runs none gives up one of its own instances in
// exchange (revoked, placed next generation in the room left) if one fits
// there; only when no exchange fits do two instances of a pipeline share a
// member (more instances than members). A member beyond its quota gives up
// a second instance of a pipeline before anything else.
func assign(members []holder, instances []string) decision {
	out := decision{Assigned: map[string][]string{}, Revoked: map[string][]string{}}
	if len(members) == 0 {
		return out
	}
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b holder) int { return cmp.Compare(a.ID, b.ID) })
	valid := map[string]bool{}
	for _, in := range instances {
		valid[in] = true
	}
	owner := map[string]string{}
	kept := map[string][]string{}
	for _, m := range members {
		running := slices.Clone(m.Running)
		slices.Sort(running)
		for _, in := range slices.Compact(running) {
			if !valid[in] || owner[in] != "" {
				out.Revoked[m.ID] = append(out.Revoked[m.ID], in)
				continue
			}
			owner[in] = m.ID
			kept[m.ID] = append(kept[m.ID], in)
		}
	}
	// Quotas: the members holding most keep the larger quota.
	order := slices.Clone(members)
	slices.SortStableFunc(order, func(a, b holder) int { return cmp.Compare(len(kept[b.ID]), len(kept[a.ID])) })
	n, k := len(instances), len(members)
	quota := map[string]int{}
	for i, m := range order {
		quota[m.ID] = n / k
		if i < n%k {
			quota[m.ID]++
		}
	}
	for _, m := range members {
		held := kept[m.ID]
		if extra := len(held) - quota[m.ID]; extra > 0 {
			// Revoke second instances of a pipeline first, then the last
			// ones (in name order): deterministic.
			held = slices.Clone(held)
			slices.SortStableFunc(held, func(a, b string) int {
				return cmp.Compare(siblingRank(held, a), siblingRank(held, b))
			})
			out.Revoked[m.ID] = append(out.Revoked[m.ID], held[len(held)-extra:]...)
			held = held[:len(held)-extra]
			slices.Sort(held)
		}
		out.Assigned[m.ID] = held
	}
	// Free instances go to the member furthest under its quota that runs
	// no instance of their pipeline; the slots left after them wait for
	// the revoked ones, next generation.
	reserved := map[string]int{} // room kept for an exchanged instance
	room := func(id string) int { return quota[id] - len(out.Assigned[id]) - reserved[id] }
	for _, in := range instances {
		if owner[in] != "" {
			continue
		}
		best, most, any := "", 0, ""
		for _, m := range members {
			r := room(m.ID)
			if r > 0 && (any == "" || r > room(any)) {
				any = m.ID
			}
			if r > most && !runsSibling(out.Assigned[m.ID], in) {
				best, most = m.ID, r
			}
		}
		if any == "" {
			break
		}
		if best == "" {
			if best = exchange(members, out, any, in); best != any {
				reserved[any]++
			}
		}
		out.Assigned[best] = append(out.Assigned[best], in)
	}
	for id, rs := range out.Revoked {
		slices.Sort(rs)
		out.Revoked[id] = slices.Compact(rs)
	}
	for id := range out.Assigned {
		slices.Sort(out.Assigned[id])
	}
	return out
}

// runsSibling reports whether ins holds another instance of in's pipeline.
func runsSibling(ins []string, in string) bool {
	name, _ := splitInstance(in)
	for _, x := range ins {
		if n, _ := splitInstance(x); n == name && x != in {
			return true
		}
	}
	return false
}

// siblingRank is 1 for an instance of held whose pipeline has an instance
// of lower index in held, else 0.
func siblingRank(held []string, in string) int {
	name, idx := splitInstance(in)
	for _, x := range held {
		if n, i := splitInstance(x); n == name && i < idx {
			return 1
		}
	}
	return 0
}

// exchange finds a home for free instance in when the member with room,
// full, runs a sibling of it: a member that runs none of its pipeline
// takes it and gives up (revoked) an instance that full can take next
// generation in the room left. With none, in goes to full.
func exchange(members []holder, out decision, full, in string) string {
	for _, m := range members {
		if m.ID == full || runsSibling(out.Assigned[m.ID], in) {
			continue
		}
		held := out.Assigned[m.ID]
		for i := len(held) - 1; i >= 0; i-- {
			if runsSibling(out.Assigned[full], held[i]) {
				continue
			}
			out.Revoked[m.ID] = append(out.Revoked[m.ID], held[i])
			out.Assigned[m.ID] = slices.Delete(slices.Clone(held), i, i+1)
			return m.ID
		}
	}
	return full
}
