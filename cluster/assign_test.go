package cluster

import (
	"fmt"
	"reflect"
	"testing"
)

func ids(n int) []string {
	var out []string
	for i := range n {
		out = append(out, InstanceID(fmt.Sprintf("p%02d", i), 0))
	}
	return out
}

// counts returns how many instances each member is assigned and checks
// that no instance is given twice or given while it is being revoked.
func check(t *testing.T, d decision, instances []string) map[string]int {
	t.Helper()
	seen := map[string]string{}
	out := map[string]int{}
	for m, ins := range d.Assigned {
		out[m] = len(ins)
		for _, in := range ins {
			if other, ok := seen[in]; ok {
				t.Fatalf("%s assigned to %s and %s", in, other, m)
			}
			seen[in] = m
		}
	}
	for m, ins := range d.Revoked {
		for _, in := range ins {
			if owner, ok := seen[in]; ok && owner != m {
				// Revoked from m while m's duplicate keeps it: allowed
				// only for an instance another member kept.
				continue
			}
			if _, ok := seen[in]; ok {
				t.Fatalf("%s both assigned to and revoked from %s", in, m)
			}
		}
	}
	return out
}

func TestAssignFreshIsBalanced(t *testing.T) {
	ins := ids(7)
	d := assign([]holder{{ID: "a"}, {ID: "b"}, {ID: "c"}}, ins)
	got := check(t, d, ins)
	total := 0
	for m, n := range got {
		if n < 2 || n > 3 {
			t.Errorf("%s has %d instances, want 2 or 3", m, n)
		}
		total += n
	}
	if total != 7 || len(d.Revoked) != 0 {
		t.Fatalf("assigned %d of 7, revoked %v", total, d.Revoked)
	}
}

func TestAssignIsSticky(t *testing.T) {
	ins := ids(6)
	first := assign([]holder{{ID: "a"}, {ID: "b"}, {ID: "c"}}, ins)
	// Member c dies: a and b keep all they ran and share c's two.
	d := assign([]holder{{ID: "a", Running: first.Assigned["a"]}, {ID: "b", Running: first.Assigned["b"]}}, ins)
	check(t, d, ins)
	for _, m := range []string{"a", "b"} {
		kept := map[string]bool{}
		for _, in := range d.Assigned[m] {
			kept[in] = true
		}
		for _, in := range first.Assigned[m] {
			if !kept[in] {
				t.Errorf("%s lost %s, which it ran", m, in)
			}
		}
		if len(d.Assigned[m]) != 3 {
			t.Errorf("%s has %d instances, want 3", m, len(d.Assigned[m]))
		}
	}
	if len(d.Revoked) != 0 {
		t.Errorf("revoked %v", d.Revoked)
	}
}

// A member joining takes work in two generations: first it is revoked
// from the loaded members (who keep running the rest), then, once they
// stopped it, it is assigned to the newcomer.
func TestAssignJoinRevokesThenMoves(t *testing.T) {
	ins := ids(4)
	d1 := assign([]holder{{ID: "a", Running: ins[:2]}, {ID: "b", Running: ins[2:]}, {ID: "c"}}, ins)
	check(t, d1, ins)
	revoked := 0
	for _, r := range d1.Revoked {
		revoked += len(r)
	}
	if revoked != 1 || len(d1.Assigned["c"]) != 0 {
		t.Fatalf("first generation: revoked %v, c got %v; want one revoked, c nothing yet", d1.Revoked, d1.Assigned["c"])
	}
	d2 := assign([]holder{{ID: "a", Running: d1.Assigned["a"]}, {ID: "b", Running: d1.Assigned["b"]}, {ID: "c"}}, ins)
	check(t, d2, ins)
	if len(d2.Revoked) != 0 || len(d2.Assigned["c"]) != 1 {
		t.Fatalf("second generation: revoked %v, c got %v; want c to get the revoked one", d2.Revoked, d2.Assigned["c"])
	}
	if !reflect.DeepEqual(d2.Assigned["a"], d1.Assigned["a"]) || !reflect.DeepEqual(d2.Assigned["b"], d1.Assigned["b"]) {
		t.Errorf("a or b changed in the second generation: %v", d2.Assigned)
	}
}

func TestAssignDropsDuplicatesAndRemoved(t *testing.T) {
	ins := ids(2)
	d := assign([]holder{{ID: "a", Running: []string{ins[0], "gone/0"}}, {ID: "b", Running: []string{ins[0]}}}, ins)
	if !reflect.DeepEqual(d.Revoked["a"], []string{"gone/0"}) || !reflect.DeepEqual(d.Revoked["b"], []string{ins[0]}) {
		t.Fatalf("revoked %v", d.Revoked)
	}
	if !reflect.DeepEqual(d.Assigned["a"], []string{ins[0]}) || !reflect.DeepEqual(d.Assigned["b"], []string{ins[1]}) {
		t.Fatalf("assigned %v", d.Assigned)
	}
}

func TestStatusSupersedes(t *testing.T) {
	running := Status{Worker: "w2", State: StateRunning, Generation: 5}
	for _, c := range []struct {
		st   Status
		want bool
	}{
		{Status{Worker: "w1", State: StateStopped, Generation: 4}, false}, // the old owner stopping late
		{Status{Worker: "w1", State: StateFailed, Generation: 4}, false},  // the old owner fenced
		{Status{Worker: "w2", State: StateFailed, Generation: 5}, true},
		{Status{Worker: "w1", State: StateStarting, Generation: 1}, true}, // the group began again
		{Status{Worker: "w3", State: StateRunning, Generation: 6}, true},
	} {
		if got := supersedes(c.st, running); got != c.want {
			t.Errorf("%+v after %+v: supersedes %v, want %v", c.st, running, got, c.want)
		}
	}
}

// siblings counts, per member, the pipelines it runs more than one
// instance of.
func siblings(d decision) map[string]int {
	out := map[string]int{}
	for m, ins := range d.Assigned {
		seen := map[string]bool{}
		for _, in := range ins {
			name, _ := splitInstance(in)
			if seen[name] {
				out[m]++
			}
			seen[name] = true
		}
	}
	return out
}

func TestAssignSpreadsInstances(t *testing.T) {
	ins := []string{InstanceID("a", 0), InstanceID("a", 1), InstanceID("a", 2), InstanceID("b", 0), InstanceID("c", 0)}
	d := assign([]holder{{ID: "m1"}, {ID: "m2"}, {ID: "m3"}}, ins)
	check(t, d, ins)
	if s := siblings(d); len(s) != 0 {
		t.Fatalf("two instances of a pipeline on one member: %v", d.Assigned)
	}
	// m3 ran a/1 and dies; m1 runs a/0, m2 runs b/0 and c/0. The only
	// member with room (m1) runs a sibling of a/1: m2 takes a/1 and gives
	// up an instance in exchange, which the next generation places on m1.
	four := []string{InstanceID("a", 0), InstanceID("a", 1), InstanceID("b", 0), InstanceID("c", 0)}
	d = assign([]holder{{ID: "m1", Running: []string{InstanceID("a", 0)}}, {ID: "m2", Running: []string{InstanceID("b", 0), InstanceID("c", 0)}}}, four)
	check(t, d, four)
	if s := siblings(d); len(s) != 0 || len(d.Revoked["m2"]) != 1 {
		t.Fatalf("want a/1 on m2 in exchange for one of its own: %+v", d)
	}
	var hs []holder
	for _, m := range []string{"m1", "m2"} {
		hs = append(hs, holder{ID: m, Running: d.Assigned[m]})
	}
	d2 := assign(hs, four)
	check(t, d2, four)
	if s := siblings(d2); len(s) != 0 || len(d2.Revoked) != 0 || len(d2.Assigned["m1"]) != 2 || len(d2.Assigned["m2"]) != 2 {
		t.Fatalf("second generation: %+v", d2)
	}
	// Two members, three instances of one pipeline: two share a member.
	d = assign([]holder{{ID: "m1"}, {ID: "m2"}}, ins[:3])
	if n := len(d.Assigned["m1"]) + len(d.Assigned["m2"]); n != 3 {
		t.Fatalf("assigns %d of 3: %+v", n, d)
	}
	// A member beyond its quota gives up a second instance first.
	d = assign([]holder{{ID: "m1", Running: []string{InstanceID("a", 0), InstanceID("a", 1), InstanceID("b", 0)}}, {ID: "m2"}},
		[]string{InstanceID("a", 0), InstanceID("a", 1), InstanceID("b", 0)})
	if got := d.Revoked["m1"]; len(got) != 1 || got[0] != InstanceID("a", 1) {
		t.Fatalf("revoked %v, want [a/1]", got)
	}
}
