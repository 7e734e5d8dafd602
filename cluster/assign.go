package cluster

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// InstanceID names one instance of a pipeline: "NAME/INDEX". A pipeline
// runs one instance today, NAME/0.
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
			// Revoke the last ones (in name order): deterministic.
			out.Revoked[m.ID] = append(out.Revoked[m.ID], held[len(held)-extra:]...)
			held = held[:len(held)-extra]
		}
		out.Assigned[m.ID] = held
	}
	// Free instances go to the member furthest under its quota; the
	// slots left after them wait for the revoked ones, next generation.
	for _, in := range instances {
		if owner[in] != "" {
			continue
		}
		best, room := "", 0
		for _, m := range members {
			if r := quota[m.ID] - len(out.Assigned[m.ID]); r > room {
				best, room = m.ID, r
			}
		}
		if best == "" {
			break
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
