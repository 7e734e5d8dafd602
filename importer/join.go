package importer

import (
	"fmt"
	"maps"
	"strings"
)

// join replaces a source connector's pipeline and a sink connector's
// pipeline that meet on one topic by one pipeline from the source's
// system to the sink's, with no Kafka in between. Pairs that cannot be
// joined stay as they were, with a note saying why.
func join(ps []*pipeline) []*pipeline {
	used := map[*pipeline]bool{}
	var out []*pipeline
	for _, src := range ps {
		if src.writes == "" || used[src] {
			continue
		}
		for _, snk := range ps {
			if used[snk] || len(snk.reads) != 1 || snk.reads[0] != src.writes {
				continue
			}
			j, why := joined(src, snk)
			if j == nil {
				src.note("", "not joined with connector %s on topic %s: %s", snk.name, src.writes, why)
				continue
			}
			used[src], used[snk] = true, true
			out = append(out, j)
			break
		}
	}
	var rest []*pipeline
	for _, p := range ps {
		if !used[p] {
			rest = append(rest, p)
		}
	}
	return append(rest, out...)
}

func joined(src, snk *pipeline) (*pipeline, string) {
	if len(src.chains) != 1 || len(snk.chains) != 1 || len(snk.extra) > 0 || len(src.extra) > 0 {
		return nil, "one of them has several outputs or a dead-letter queue"
	}
	a, b := src.chains[0], snk.chains[0]
	for _, t := range b.transforms {
		for _, l := range t.body {
			if strings.Contains(strings.ReplaceAll(l, "meta.offset", ""), "meta.") {
				return nil, fmt.Sprintf("transform %s reads Kafka metadata", t.name)
			}
		}
	}
	if b.sink == nil {
		return nil, "the sink connector has no single sink"
	}
	names := map[string]bool{a.source.name: true}
	var ts []*stage
	for _, t := range append(append([]*stage{}, a.transforms...), b.transforms...) {
		cp := *t
		for names[cp.name] {
			cp.name += "_2"
		}
		names[cp.name] = true
		ts = append(ts, &cp)
	}
	sink := *b.sink
	for names[sink.name] {
		sink.name += "_2"
	}
	p := &pipeline{
		name:     src.name + "_to_" + snk.name,
		header:   append(append([]string{}, src.header...), snk.header...),
		delivery: snk.delivery,
		chains:   []*chain{{source: a.source, transforms: ts, sink: &sink}},
		envs:     map[string]string{},
	}
	p.header = append(p.header, fmt.Sprintf("Joined on topic %s: records go from the source to the sink directly.", src.writes))
	maps.Copy(p.envs, src.envs)
	maps.Copy(p.envs, snk.envs)
	delete(p.envs, "KAFKA_BROKERS")
	for _, n := range append(append([]Note{}, src.notes...), snk.notes...) {
		if strings.Contains(n.Key, "converter") || strings.Contains(n.Message, "consumer group") {
			continue // Kafka is gone from between them
		}
		p.notes = append(p.notes, n)
	}
	return p, ""
}
