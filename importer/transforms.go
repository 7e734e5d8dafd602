package importer

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"pipe.dev/pipe/compiler"
)

// transforms turns the connector's single message transforms, in order,
// into stages between its source and its sink, and into the per-record
// attributes of a kafka sink (topic, key, headers).
func (cv *converter) transforms() error {
	names := list(cv.get("transforms"))
	preds := map[string]string{} // predicate name → expression true when it matches
	for _, name := range list(cv.get("predicates")) {
		e, err := cv.predicate(name)
		if err != nil {
			return err
		}
		preds[name] = e
	}
	for i, name := range names {
		pre := "transforms." + name + "."
		typ := cv.get(pre + "type")
		if typ == "" {
			return fmt.Errorf("transforms.%s.type is missing", name)
		}
		short := typ[strings.LastIndexByte(typ, '.')+1:]
		cond := ""
		if pn := cv.get(pre + "predicate"); pn != "" {
			e, ok := preds[pn]
			if !ok {
				return fmt.Errorf("%spredicate: no predicate %q in predicates", pre, pn)
			}
			if cv.get(pre+"negate") == "true" {
				e = "!(" + e + ")"
			}
			cond = e
		}
		cv.used[pre+"negate"] = true
		cv.pending.reset()
		st, err := cv.smt(name, short, pre, cond)
		if err != nil {
			return fmt.Errorf("transform %s (%s): %w", name, short, err)
		}
		cv.pending.reset()
		if st != nil {
			st.origin = "transforms." + name + " (" + short + ")"
			st.name = ident(name)
			if compiler.IsReserved(st.name) {
				st.name += "_stage"
			}
			if st.name == "in" || st.name == "out" || st.name == "dlq" {
				st.name = fmt.Sprintf("t%d_%s", i+1, st.name)
			}
			for _, c := range cv.p.chains {
				c.transforms = append(c.transforms, st)
			}
		}
	}
	if len(cv.p.chains) > 1 {
		// Each chain needs stages of its own.
		for ci, c := range cv.p.chains[1:] {
			for j, t := range c.transforms {
				cp := *t
				cp.name = fmt.Sprintf("%s_%d", t.name, ci+2)
				c.transforms[j] = &cp
			}
		}
	}
	return nil
}

// predicate returns an expression that is true for the records a
// predicate matches.
func (cv *converter) predicate(name string) (string, error) {
	pre := "predicates." + name + "."
	typ := cv.get(pre + "type")
	short := typ[strings.LastIndexByte(typ, '.')+1:]
	switch short {
	case "TopicNameMatches":
		if cv.sourceKind {
			return "", fmt.Errorf("predicate %s: TopicNameMatches on a source connector: its records have no topic yet", name)
		}
		return fmt.Sprintf("regex_match(meta.topic, %s)", strconv.Quote("^(?:"+cv.get(pre+"pattern")+")$")), nil
	case "HasHeaderKey":
		if cv.sourceKind {
			return "", fmt.Errorf("predicate %s: HasHeaderKey on a source connector: its records have no headers", name)
		}
		return fmt.Sprintf("%s in meta.headers", strconv.Quote(cv.get(pre+"name"))), nil
	case "RecordIsTombstone":
		cv.note(pre+"type", "pipe does not pass tombstones (null values) through; RecordIsTombstone never matches")
		return "false", nil
	}
	return "", fmt.Errorf("predicate %s: %s has no counterpart", name, typ)
}

// smt returns the stage a transform becomes, or nil when it became sink
// attributes or a note.
func (cv *converter) smt(name, short, pre, cond string) (*stage, error) {
	kind, part, _ := strings.Cut(short, "$")
	if part == "Key" {
		cv.note(pre+"type", "%s of the key is not carried over: pipe transforms reshape values (the kafka sink's key := sets the key)", kind)
		cv.skip(pre)
		return nil, nil
	}
	when := func(e, old string) string {
		if cond == "" {
			return e
		}
		return fmt.Sprintf("(%s) ? %s : %s", cond, e, old)
	}
	mapStage := func(lines ...string) *stage {
		return &stage{reads: &cv.pending, kind: "transform", component: "map", body: lines}
	}
	fieldOf := func(key string) (string, error) {
		f, ok := field(cv.get(key))
		if !ok {
			return "", fmt.Errorf("%s: %q is not a field name pipe can write", key, cv.c.Config[key])
		}
		return f, nil
	}
	switch kind {
	case "InsertField":
		var lines []string
		add := func(key, e string) error {
			if !cv.has(key) {
				return nil
			}
			f, err := fieldOf(key)
			if err != nil {
				return err
			}
			f = strings.TrimSuffix(strings.TrimPrefix(f, "!"), "?")
			if cond == "" {
				lines = append(lines, fmt.Sprintf("%s := %s", f, e))
			} else {
				lines = append(lines, fmt.Sprintf("%s := (%s) ? %s : null", f, cond, e))
			}
			return nil
		}
		if err := add(pre+"static.field", strconv.Quote(cv.get(pre+"static.value"))); err != nil {
			return nil, err
		}
		if !cv.sourceKind {
			for _, m := range []struct{ key, e string }{{"topic.field", "meta.topic"}, {"partition.field", "meta.partition"}, {"offset.field", "meta.offset"}, {"timestamp.field", "meta.timestamp"}} {
				if err := add(pre+m.key, m.e); err != nil {
					return nil, err
				}
			}
		} else {
			for _, k := range []string{"topic.field", "partition.field", "offset.field", "timestamp.field"} {
				if cv.has(pre + k) {
					cv.note(pre+k, "a source connector's records have no Kafka %s before they are written", strings.TrimSuffix(k, ".field"))
				}
			}
		}
		if len(lines) == 0 {
			return nil, fmt.Errorf("no field to insert")
		}
		return mapStage(lines...), nil
	case "ReplaceField":
		var lines []string
		include := append(list(cv.get(pre+"include")), list(cv.get(pre+"whitelist"))...)
		exclude := append(list(cv.get(pre+"exclude")), list(cv.get(pre+"blacklist"))...)
		if cond != "" {
			return nil, fmt.Errorf("a predicate on ReplaceField is not supported")
		}
		renamed := map[string]bool{}
		for _, r := range list(cv.get(pre + "renames")) {
			from, to, ok := strings.Cut(r, ":")
			ff, ok1 := field(from)
			tf, ok2 := field(to)
			if !ok || !ok1 || !ok2 {
				return nil, fmt.Errorf("renames: %q is not from:to", r)
			}
			lines = append(lines, fmt.Sprintf("%s := %s", tf, ff))
			renamed[ff] = true
		}
		if len(include) > 0 {
			keep := include
			for _, r := range list(cv.get(pre + "renames")) {
				_, to, _ := strings.Cut(r, ":")
				keep = append(keep, to)
			}
			lines = append(lines, "keep "+strings.Join(keep, ", "))
		}
		drop := exclude
		for f := range renamed {
			drop = append(drop, f)
		}
		if len(drop) > 0 {
			lines = append(lines, "drop "+strings.Join(drop, ", "))
		}
		if len(lines) == 0 {
			return nil, fmt.Errorf("nothing to replace")
		}
		return mapStage(lines...), nil
	case "MaskField":
		var lines []string
		repl := cv.get(pre + "replacement")
		for _, f := range list(cv.get(pre + "fields")) {
			ff, ok := field(f)
			if !ok {
				return nil, fmt.Errorf("fields: %q is not a field name pipe can write", f)
			}
			e := "null"
			if repl != "" {
				e = strconv.Quote(repl)
			}
			lines = append(lines, fmt.Sprintf("%s := %s", ff, when(e, ff)))
		}
		if repl == "" {
			cv.note(pre+"fields", "masked fields become null, not the empty value of their type")
		}
		if len(lines) == 0 {
			return nil, fmt.Errorf("no fields")
		}
		return mapStage(lines...), nil
	case "Cast":
		var lines []string
		for _, spec := range list(cv.get(pre + "spec")) {
			f, t, ok := strings.Cut(spec, ":")
			if !ok {
				return nil, fmt.Errorf("spec: %q casts the whole value, which pipe does not do; name the field (field:type)", spec)
			}
			ff, ok := field(f)
			if !ok {
				return nil, fmt.Errorf("spec: %q is not a field name pipe can write", f)
			}
			fn := map[string]string{"int8": "to_int", "int16": "to_int", "int32": "to_int", "int64": "to_int",
				"float32": "to_float", "float64": "to_float", "boolean": "to_bool", "string": "to_string"}[t]
			if fn == "" {
				return nil, fmt.Errorf("spec: cannot cast to %s", t)
			}
			lines = append(lines, fmt.Sprintf("%s := %s", ff, when(fmt.Sprintf("%s(%s)", fn, ff), ff)))
		}
		if len(lines) == 0 {
			return nil, fmt.Errorf("no spec")
		}
		return mapStage(lines...), nil
	case "ExtractField":
		if cond != "" {
			return nil, fmt.Errorf("a predicate on ExtractField is not supported")
		}
		f := cv.get(pre + "field")
		if f == "" {
			return nil, fmt.Errorf("no field")
		}
		s := &stage{reads: &cv.pending, kind: "transform", component: "extract"}
		s.set("field", quote(f))
		cv.note(pre+"field", "extract takes a field holding a record; a field holding a plain value is a record error")
		return s, nil
	case "Flatten":
		if cond != "" {
			return nil, fmt.Errorf("a predicate on Flatten is not supported")
		}
		s := &stage{reads: &cv.pending, kind: "transform", component: "flatten"}
		sep := cv.get(pre + "delimiter")
		if sep == "" {
			sep = "."
		}
		s.set("separator", quote(sep))
		return s, nil
	case "Filter":
		if cond == "" {
			return nil, fmt.Errorf("a Filter without a predicate drops every record")
		}
		return &stage{reads: &cv.pending, kind: "transform", component: "filter", body: []string{"where !(" + cond + ")"}}, nil
	case "TimestampConverter":
		f, err := fieldOf(pre + "field")
		if err != nil {
			return nil, err
		}
		format := cv.get(pre + "format")
		var e string
		switch t := cv.get(pre + "target.type"); t {
		case "unix":
			e = fmt.Sprintf("unix_milli(%s)", f)
		case "Timestamp":
			e = f
			cv.note(pre+"target.type", "the field is kept as it is: a schema typing it timestamp makes it one")
		case "string":
			if format == "" {
				return nil, fmt.Errorf("target.type string needs format")
			}
			e = fmt.Sprintf("format_time(%s, %s)", f, strconv.Quote(javaLayout(format)))
		default:
			return nil, fmt.Errorf("target.type %q is not supported (unix, string, Timestamp)", t)
		}
		return mapStage(fmt.Sprintf("%s := %s", f, when(e, f))), nil
	case "TimestampRouter", "RegexRouter", "ValueToKey", "InsertHeader", "DropHeaders", "HeaderFrom":
		return nil, cv.sinkSMT(kind, pre, cond)
	case "HoistField":
		cv.note(pre+"type", "HoistField is not carried over: a map lists the fields to nest (wrapped := {a: a, b: b})")
		cv.skip(pre)
		return nil, nil
	case "ExtractNewRecordState":
		// Debezium's envelope {before, after, source, op}: the new state
		// is its after field.
		if cond != "" {
			return nil, fmt.Errorf("a predicate on ExtractNewRecordState is not supported")
		}
		if f := cv.p.chains[0].source.get("format"); f == "bytes" || f == "string" {
			cv.note(pre+"type", "ExtractNewRecordState is not carried over: the records are %s (see value.converter), so their after field cannot be read", f)
			cv.skip(pre)
			return nil, nil
		}
		s := &stage{reads: &cv.pending, kind: "transform", component: "extract"}
		s.set("field", quote("after"))
		cv.note(pre+"type", "ExtractNewRecordState becomes extract of the envelope's after field: a delete (after = null) is a record error, and a tombstone is not passed on")
		cv.skip(pre)
		return s, nil
	}
	cv.note(pre+"type", "%s has no counterpart in pipe: the records pass without it", short)
	cv.skip(pre)
	return nil, nil
}

// sinkSMT turns a transform of routing, keys or headers into the kafka
// sink's per-record attributes.
func (cv *converter) sinkSMT(kind, pre, cond string) error {
	var sinks []*stage
	for _, c := range cv.p.chains {
		if c.sink != nil && c.sink.component == "kafka" {
			sinks = append(sinks, c.sink)
		}
	}
	if len(sinks) == 0 {
		cv.note(pre+"type", "%s changes what a kafka sink writes; this pipeline writes no Kafka topic", kind)
		cv.skip(pre)
		return nil
	}
	if cond != "" {
		return fmt.Errorf("a predicate on %s is not supported", kind)
	}
	topicOf := func(s *stage) string {
		t := s.get("topic")
		if strings.HasPrefix(t, ":=") {
			return "(" + strings.TrimSpace(strings.TrimPrefix(t, ":=")) + ")"
		}
		if t == "" {
			return "meta.topic"
		}
		return strconv.Quote(strings.Trim(t, `"`))
	}
	for _, s := range sinks {
		switch kind {
		case "RegexRouter":
			re, err := regexp.Compile("^(?:" + cv.get(pre+"regex") + ")$")
			if err != nil {
				return fmt.Errorf("regex: %v", err)
			}
			repl := javaReplacement(cv.get(pre + "replacement"))
			if t := s.get("topic"); strings.HasPrefix(t, `"`) {
				topic, _ := strconv.Unquote(strings.ReplaceAll(t, `\$`, "$"))
				if re.MatchString(topic) {
					s.set("topic", quote(re.ReplaceAllString(topic, repl)))
				}
				continue
			}
			s.set("topic", fmt.Sprintf(":= regex_replace(%s, %s, %s)", topicOf(s),
				strconv.Quote("^(?:"+cv.get(pre+"regex")+")$"), strconv.Quote(javaReplacement(cv.get(pre+"replacement")))))
		case "TimestampRouter":
			f := cv.get(pre + "topic.format")
			if f == "" {
				f = "${topic}-${timestamp}"
			}
			tf := cv.get(pre + "timestamp.format")
			if tf == "" {
				tf = "yyyyMMdd"
			}
			if cv.sourceKind {
				return fmt.Errorf("a source connector's records have no timestamp")
			}
			parts := strings.Split(f, "${timestamp}")
			var e []string
			for i, p := range parts {
				if i > 0 {
					e = append(e, fmt.Sprintf("format_time(meta.timestamp, %s)", strconv.Quote(javaLayout(tf))))
				}
				for j, q := range strings.Split(p, "${topic}") {
					if j > 0 {
						e = append(e, topicOf(s))
					}
					if q != "" {
						e = append(e, strconv.Quote(q))
					}
				}
			}
			s.set("topic", ":= "+strings.Join(e, " + "))
		case "ValueToKey":
			var kv []string
			for _, f := range list(cv.get(pre + "fields")) {
				ff, ok := field(f)
				if !ok {
					return fmt.Errorf("fields: %q is not a field name pipe can write", f)
				}
				kv = append(kv, fmt.Sprintf("%s: %s", ff, ff))
			}
			s.set("key", ":= {"+strings.Join(kv, ", ")+"}")
		case "InsertHeader":
			h := cv.get(pre + "header")
			v := cv.get(pre + "value.literal")
			s.set("headers", ":= "+withHeaders(headersOf(s), fmt.Sprintf("%s: %s", strconv.Quote(h), strconv.Quote(v))))
		case "DropHeaders":
			hs := list(cv.get(pre + "headers"))
			q := make([]string, len(hs))
			for i, h := range hs {
				q[i] = strconv.Quote(h)
			}
			base := headersOf(s)
			if base == "" {
				continue // no headers to drop
			}
			s.set("headers", fmt.Sprintf(":= without(%s, %s)", base, strings.Join(q, ", ")))
		case "HeaderFrom":
			fs, hs := list(cv.get(pre+"fields")), list(cv.get(pre+"headers"))
			if len(fs) != len(hs) || len(fs) == 0 {
				return fmt.Errorf("fields and headers must name as many")
			}
			var kv []string
			for i, f := range fs {
				ff, ok := field(f)
				if !ok {
					return fmt.Errorf("fields: %q is not a field name pipe can write", f)
				}
				kv = append(kv, fmt.Sprintf("%s: to_string(%s)", strconv.Quote(hs[i]), ff))
			}
			s.set("headers", ":= "+withHeaders(headersOf(s), strings.Join(kv, ", ")))
			if cv.get(pre+"operation") == "move" {
				cv.note(pre+"operation", "move: the fields stay in the value as well (drop them in a map)")
			}
		}
	}
	cv.skip(pre)
	return nil
}

// headersOf is the expression of the headers a kafka sink writes so
// far: "" for none (a source connector's records have none).
func headersOf(s *stage) string {
	h := s.get("headers")
	if strings.HasPrefix(h, ":=") {
		return strings.TrimSpace(strings.TrimPrefix(h, ":="))
	}
	return ""
}

// withHeaders adds map entries to a headers expression.
func withHeaders(base, entries string) string {
	if base == "" {
		return "{" + entries + "}"
	}
	return fmt.Sprintf("merge(%s, {%s})", base, entries)
}

// skip marks every key of a transform as read.
func (cv *converter) skip(pre string) {
	for k := range cv.c.Config {
		if strings.HasPrefix(k, pre) {
			cv.used[k] = true
		}
	}
}

// javaReplacement turns $1 group references into Go's ${1}.
func javaReplacement(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			b.WriteString("${" + s[i+1:j] + "}")
			i = j - 1
			continue
		}
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// javaLayout turns a java.text.SimpleDateFormat pattern into a Go layout.
func javaLayout(p string) string {
	r := strings.NewReplacer("yyyy", "2006", "YYYY", "2006", "yy", "06", "MM", "01", "dd", "02", "HH", "15", "mm", "04", "ss", "05",
		"SSS", "000", "XXX", "Z07:00", "Z", "-0700", "'T'", "T", "'", "")
	return r.Replace(p)
}
