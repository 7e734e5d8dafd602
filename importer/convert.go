package importer

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// File is one pipeline written from one connector, or from a source and a
// sink connector joined on their topic.
type File struct {
	Name  string // the pipeline's name, also the file's base name
	Text  string // the .pipe source (unformatted)
	Notes []Note
	Envs  map[string]string // environment variables the pipeline reads
}

// Options change what Convert writes.
type Options struct {
	// Join writes one pipeline for a source connector and a sink
	// connector that share a topic, with no Kafka in between.
	Join bool
	// HasComponent says whether a component exists (a sink "mysql",
	// say); nil: only those every build has.
	HasComponent func(kind, name string) bool
}

// Convert turns connectors into pipelines.
func Convert(conns []Connector, opt Options) ([]File, error) {
	var ps []*pipeline
	for i := range conns {
		p, err := convert(&conns[i], opt)
		if err != nil {
			return nil, fmt.Errorf("%s: connector %q: %w", conns[i].From, conns[i].Name, err)
		}
		ps = append(ps, p)
	}
	if opt.Join {
		ps = join(ps)
	}
	seen := map[string]int{}
	var out []File
	for _, p := range ps {
		if n := seen[p.name]; n > 0 {
			p.name = fmt.Sprintf("%s_%d", p.name, n+1)
		}
		seen[p.name]++
		out = append(out, File{Name: p.name, Text: p.text(), Notes: p.notes, Envs: p.envs})
	}
	return out, nil
}

// converter holds what converting one connector needs.
type converter struct {
	c    *Connector
	p    *pipeline
	opt  Options
	used map[string]bool // keys carried over (or noted)
	// pending are the keys read and not yet the origin of an attribute
	// (see stage.reads).
	pending reads
	// sourceKind says which end of Kafka the connector is: a source
	// connector writes to Kafka, a sink connector reads from it.
	sourceKind bool
	// of a sink connector
	topics []string
}

func (cv *converter) get(key string) string {
	cv.used[key] = true
	if _, ok := cv.c.Config[key]; ok {
		cv.pending.add(key)
	}
	return cv.c.Config[key]
}

// note notes key (marking it read).
func (cv *converter) note(key, format string, args ...any) {
	cv.used[key] = true
	cv.p.note(key, format, args...)
}

func (cv *converter) has(key string) bool {
	_, ok := cv.c.Config[key]
	return ok
}

// str writes a config value as a literal; a reference of a provider pipe
// does not know becomes an environment variable.
func (cv *converter) str(key string) string {
	v := cv.get(key)
	lit, ok := value(v)
	if !ok {
		env := envName(cv.c.Name, key)
		cv.p.envs[env] = fmt.Sprintf("the value of %s (%s)", key, v)
		cv.note(key, "a config provider reference pipe does not resolve; read from $%s instead", env)
		return `"${env:` + env + `}"`
	}
	return lit
}

// secret returns a reference to an environment variable holding the
// value of key: pipeline files never hold credentials.
func (cv *converter) secret(key string) string {
	v := cv.get(key)
	if connectRef.MatchString(v) {
		return v
	}
	env := envName(cv.c.Name, key)
	cv.p.envs[env] = "the value of " + key
	return "${env:" + env + "}"
}

func convert(c *Connector, opt Options) (*pipeline, error) {
	p := &pipeline{name: ident(c.Name), envs: map[string]string{}}
	p.header = []string{
		fmt.Sprintf("Written by pipe import from %s: Kafka Connect connector %q", c.From, c.Name),
		fmt.Sprintf("(%s).", c.Config["connector.class"]),
	}
	cv := &converter{c: c, p: p, opt: opt, used: map[string]bool{"name": true, "connector.class": true}}
	cv.pending.cfg, cv.pending.name = c.Config, c.Name
	if strings.HasPrefix(c.Config["connector.class"], "io.debezium.connector.jdbc.") {
		debeziumJDBC(c, p)
	}
	var err error
	switch c.Class() {
	case "FileStreamSourceConnector":
		err = cv.fileSource()
	case "FileStreamSinkConnector":
		err = cv.fileSink()
	case "JdbcSourceConnector":
		err = cv.jdbcSource()
	case "JdbcSinkConnector":
		err = cv.jdbcSink()
	case "MirrorSourceConnector":
		err = cv.mirror()
	case "S3SinkConnector":
		err = cv.s3Sink()
	case "PostgresConnector":
		err = cv.debeziumPostgres()
	case "HttpSinkConnector":
		err = cv.httpSink()
	case "RabbitMQSourceConnector":
		err = cv.rabbitSource()
	case "RabbitMQSinkConnector":
		err = cv.rabbitSink()
	case "MqttSourceConnector":
		err = cv.mqttSource()
	case "MqttSinkConnector":
		err = cv.mqttSink()
	case "RedisSinkConnector":
		err = cv.redisSink()
	case "":
		return nil, fmt.Errorf("no connector.class")
	default:
		return nil, fmt.Errorf("connector class %s has no counterpart in pipe (known: FileStreamSource, FileStreamSink, JdbcSource, JdbcSink, MirrorSource, S3Sink, HttpSink, RabbitMQSource, RabbitMQSink, MqttSource, MqttSink, RedisSink, Debezium PostgresConnector)", c.Config["connector.class"])
	}
	if err != nil {
		return nil, err
	}
	if err := cv.transforms(); err != nil {
		return nil, err
	}
	cv.errors()
	cv.exactlyOnce()
	cv.common()
	cv.leftovers()
	if cv.sourceKind && len(p.chains) == 1 && p.chains[0].sink != nil {
		if t := p.chains[0].sink.get("topic"); strings.HasPrefix(t, `"`) {
			p.writes = strings.Trim(t, `"`)
		}
	}
	p.reads = cv.topics
	return p, nil
}

// kafkaStage is the Kafka end of a connector: the topics a source
// connector writes or a sink connector reads.
func (cv *converter) kafkaStage(kind, name string) *stage {
	s := &stage{kind: kind, name: name, component: "kafka"}
	s.set("brokers", `["${env:KAFKA_BROKERS}"]`)
	s.reads = &cv.pending
	cv.p.envs["KAFKA_BROKERS"] = "the Kafka bootstrap servers (the Connect worker's bootstrap.servers), host:port"
	return s
}

// format sets a Kafka stage's value (and key) format from the converters.
func (cv *converter) format(s *stage) {
	conv := func(which string) string {
		key := which + ".converter"
		cl := cv.get(key)
		short := cl[strings.LastIndexByte(cl, '.')+1:]
		switch short {
		case "":
			if which == "value" {
				cv.note(key, "not set: the worker's converter applies; JSON assumed")
			}
			return "json"
		case "JsonConverter":
			if cv.get(key+".schemas.enable") != "false" && which == "value" {
				cv.note(key+".schemas.enable", "records are read and written as plain JSON, without the {schema, payload} envelope")
			}
			return "json"
		case "StringConverter":
			return "string"
		case "ByteArrayConverter":
			return "bytes"
		}
		cv.note(key, "%s is not supported yet: records pass as bytes", short)
		return "bytes"
	}
	for k := range cv.c.Config {
		if strings.HasPrefix(k, "value.converter.") || strings.HasPrefix(k, "key.converter.") {
			cv.used[k] = true
		}
	}
	if f := conv("value"); f != "json" {
		s.set("format", f)
	}
	if cv.has("key.converter") {
		if f := conv("key"); s.kind == "source" {
			s.set("key_format", f)
		} else if f != "json" {
			cv.note("key.converter", "a kafka sink writes a string key as it is and other keys as JSON")
		}
	}
}

func (cv *converter) tasks(s *stage) {
	if !cv.has("tasks.max") {
		return
	}
	cv.used["tasks.max"] = true
	n, err := strconv.Atoi(cv.c.Config["tasks.max"])
	if err != nil || n < 1 {
		cv.note("tasks.max", "%q is not a task count", cv.c.Config["tasks.max"])
		return
	}
	if n > 1 {
		cv.get("tasks.max")
		s.set("tasks", strconv.Itoa(n))
	}
}

// bestDelivery is the delivery written: exactly once where the sink
// gives it.
func (cv *converter) bestDelivery(sink string) {
	switch sink {
	case "kafka", "postgres", "file", "mysql", "s3":
		cv.p.delivery = "exactly_once"
	default:
		cv.p.delivery = "at_least_once"
	}
}

func (cv *converter) fileSource() error {
	cv.sourceKind = true
	src := &stage{reads: &cv.pending, kind: "source", name: "lines", component: "file"}
	if !cv.has("file") {
		return fmt.Errorf("no file: FileStreamSource reading standard input has no counterpart (use the stdin source)")
	}
	src.set("path", cv.str("file"))
	src.set("format", "lines")
	if cv.has("batch.size") {
		src.set("batch", cv.get("batch.size"))
	}
	snk := cv.kafkaStage("sink", "out")
	snk.set("topic", cv.str("topic"))
	snk.set("format", "string")
	cv.used["value.converter"] = true
	cv.used["key.converter"] = true
	if vc := cv.c.Config["value.converter"]; strings.HasSuffix(vc, ".JsonConverter") {
		cv.note("value.converter", "JsonConverter would write each line as a JSON string (in quotes); the lines are written as they are (format = string)")
	}
	for k := range cv.c.Config {
		if strings.HasPrefix(k, "value.converter.") || strings.HasPrefix(k, "key.converter.") {
			cv.used[k] = true
		}
	}
	cv.tasks(src)
	cv.bestDelivery("kafka")
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// kafkaSource is the Kafka source of a sink connector.
func (cv *converter) kafkaSource() (*stage, error) {
	src := cv.kafkaStage("source", "in")
	if cv.has("topics.regex") {
		return nil, fmt.Errorf("topics.regex: the kafka source reads named topics; list them in topics")
	}
	cv.topics = list(cv.get("topics"))
	if len(cv.topics) == 0 {
		return nil, fmt.Errorf("no topics")
	}
	if len(cv.topics) == 1 {
		src.set("topic", quote(cv.topics[0]))
	} else {
		src.set("topics", quoteList(cv.topics))
	}
	src.set("group", quote("connect-"+cv.c.Name))
	// Connect's sink consumers read a partition without a committed
	// offset from its beginning (auto.offset.reset = earliest).
	switch cv.get("consumer.override.auto.offset.reset") {
	case "latest":
		src.set("start", "latest")
	default:
		src.set("start", "earliest")
	}
	cv.note("", "the consumer group is connect-%s, as Kafka Connect's: the pipeline continues from its committed offsets", cv.c.Name)
	cv.format(src)
	cv.tasks(src)
	return src, nil
}

// kafkaTo returns the kafka source of a sink connector and its sink
// stage, of component.
func (cv *converter) kafkaTo(component string) (src, snk *stage, err error) {
	if src, err = cv.kafkaSource(); err != nil {
		return nil, nil, err
	}
	return src, &stage{reads: &cv.pending, kind: "sink", name: "out", component: component}, nil
}

func (cv *converter) fileSink() error {
	src, snk, err := cv.kafkaTo("file")
	if err != nil {
		return err
	}
	if !cv.has("file") {
		return fmt.Errorf("no file: FileStreamSink writing standard output: use the stdout sink")
	}
	snk.set("path", cv.str("file"))
	if src.get("format") == "" {
		snk.set("format", "json") // a JSON line a record
	} else {
		snk.set("format", "lines")
	}
	cv.bestDelivery("file")
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// jdbc parses connection.url into a component and its dsn.
func (cv *converter) jdbc(kind string) (component, dsn, password string, err error) {
	raw := cv.get("connection.url")
	if raw == "" {
		return "", "", "", fmt.Errorf("no connection.url")
	}
	rest, ok := strings.CutPrefix(raw, "jdbc:")
	if !ok {
		return "", "", "", fmt.Errorf("connection.url %q is not a JDBC URL", raw)
	}
	sub, _, _ := strings.Cut(rest, ":")
	switch sub {
	case "postgresql":
		component = "postgres"
	case "mysql", "mariadb":
		component = "mysql"
	default:
		return "", "", "", fmt.Errorf("connection.url: %s databases have no pipe component", sub)
	}
	if cv.opt.HasComponent != nil && !cv.opt.HasComponent(kind, component) {
		return "", "", "", fmt.Errorf("connection.url: this build of pipe has no %s %s", component, kind)
	}
	u, err := url.Parse(rest)
	if err != nil || u.Host == "" {
		return "", "", "", fmt.Errorf("connection.url %q: not host:port/database", raw)
	}
	q := u.Query()
	user := cv.get("connection.user")
	if user == "" {
		user = q.Get("user")
	}
	q.Del("user")
	var pass string
	if cv.has("connection.password") {
		pass = cv.secret("connection.password")
	} else if q.Has("password") {
		env := envName(cv.c.Name, "password")
		cv.p.envs[env] = "the password of connection.url"
		pass = "${env:" + env + "}"
		cv.note("connection.url", "its password is read from $%s", env)
	}
	q.Del("password")
	db := strings.TrimPrefix(u.Path, "/")
	switch component {
	case "postgres":
		userinfo := ""
		if user != "" || pass != "" {
			userinfo = url.PathEscape(user)
			if pass != "" {
				userinfo += ":" + pass
			}
			userinfo += "@"
		}
		dsn = "postgres://" + userinfo + u.Host + "/" + db
		if enc := q.Encode(); enc != "" {
			dsn += "?" + enc
		}
	case "mysql":
		// The Go MySQL driver's form; the password goes in its own
		// attribute.
		if user != "" {
			dsn = user + "@"
		}
		dsn += "tcp(" + u.Host + ")/" + db
		if enc := q.Encode(); enc != "" {
			dsn += "?" + enc
		}
		password = pass
	}
	return component, dsn, password, nil
}

func (cv *converter) jdbcSource() error {
	cv.sourceKind = true
	comp, dsn, password, err := cv.jdbc("source")
	if err != nil {
		return err
	}
	mode := cv.get("mode")
	modes := map[string]string{"bulk": "bulk", "incrementing": "incrementing", "timestamp": "timestamp", "timestamp+incrementing": "timestamp_incrementing"}
	pm, ok := modes[mode]
	if !ok {
		return fmt.Errorf("mode %q: one of bulk, incrementing, timestamp, timestamp+incrementing", mode)
	}
	prefix := cv.get("topic.prefix")
	var tables []string
	for _, k := range []string{"table.whitelist", "table.include.list"} {
		tables = append(tables, list(cv.get(k))...)
	}
	query := cv.get("query")
	if query == "" && len(tables) == 0 {
		return fmt.Errorf("neither query nor table.whitelist: a source reading every table of a database has no counterpart; list the tables")
	}
	for _, k := range []string{"table.blacklist", "table.exclude.list", "schema.pattern", "catalog.pattern", "table.types"} {
		if cv.has(k) {
			cv.note(k, "the tables read are those listed; %s is not applied", k)
		}
	}
	base := func(name string) *stage {
		s := &stage{reads: &cv.pending, kind: "source", name: name, component: comp}
		s.set("dsn", cv.dsnRef(dsn))
		if password != "" {
			s.set("password", quoteRefs(password))
		}
		s.set("mode", pm)
		if strings.Contains(mode, "incrementing") {
			col := cv.get("incrementing.column.name")
			if col == "" {
				cv.note("incrementing.column.name", "not set: Kafka Connect would take the autoincrement column; name it in incrementing_column")
				col = "id"
			}
			s.set("incrementing_column", quote(col))
		}
		if strings.HasPrefix(mode, "timestamp") {
			cols := list(cv.get("timestamp.column.name"))
			if len(cols) == 0 {
				return nil
			}
			if len(cols) > 1 {
				cv.note("timestamp.column.name", "only the first column, %s, is used (COALESCE of several is not supported)", cols[0])
			}
			s.set("timestamp_column", quote(cols[0]))
		}
		if v := cv.get("poll.interval.ms"); v != "" {
			if d, err := millis(v); err == nil {
				s.set("poll", d)
			}
		}
		if v := cv.get("timestamp.delay.interval.ms"); v != "" {
			if d, err := millis(v); err == nil {
				s.set("delay", d)
			}
		}
		if v := cv.get("batch.max.rows"); v != "" {
			s.set("batch", v)
		}
		return s
	}
	for _, k := range []string{"numeric.mapping", "validate.non.null", "db.timezone", "dialect.name", "table.poll.interval.ms", "connection.attempts", "connection.backoff.ms", "quote.sql.identifiers"} {
		if cv.has(k) {
			cv.used[k] = true
		}
	}
	if query != "" {
		s := base("rows")
		if s == nil {
			return fmt.Errorf("timestamp.column.name is required in mode %s", mode)
		}
		s.set("query", quote(query))
		snk := cv.kafkaStage("sink", "out")
		snk.set("topic", quote(prefix))
		cv.format(snk)
		cv.p.chains = append(cv.p.chains, &chain{source: s, sink: snk})
	} else {
		for _, t := range tables {
			s := base(ident(t))
			if s == nil {
				return fmt.Errorf("timestamp.column.name is required in mode %s", mode)
			}
			s.set("table", quote(t))
			snk := cv.kafkaStage("sink", ident(t)+"_out")
			snk.set("topic", quote(prefix+t))
			cv.format(snk)
			cv.p.chains = append(cv.p.chains, &chain{source: s, sink: snk})
		}
		if len(tables) > 1 {
			cv.note("", "one source and one kafka sink a table, each into topic.prefix + table")
		}
	}
	cv.used["tasks.max"] = true
	cv.bestDelivery("kafka")
	return nil
}

func (cv *converter) jdbcSink() error {
	src, err := cv.kafkaSource()
	if err != nil {
		return err
	}
	comp, dsn, password, err := cv.jdbc("sink")
	if err != nil {
		return err
	}
	format := cv.get("table.name.format")
	if format == "" {
		format = "${topic}"
	}
	sinkFor := func(name, table string) *stage {
		s := &stage{reads: &cv.pending, kind: "sink", name: name, component: comp}
		s.set("dsn", cv.dsnRef(dsn))
		if password != "" {
			s.set("password", quoteRefs(password))
		}
		s.set("table", quote(table))
		return s
	}
	var sinks []*stage
	if strings.Contains(format, "${topic}") && len(cv.topics) > 1 {
		route := &stage{reads: &cv.pending, kind: "transform", name: "by_topic", component: "route"}
		for i, t := range cv.topics {
			port := ident(t)
			if i == len(cv.topics)-1 {
				// The source reads these topics only: the last one is
				// what no other case matches.
				route.body = append(route.body, "else "+port)
			} else {
				route.body = append(route.body, fmt.Sprintf("case %s when meta.topic == %s", port, quote(t)))
			}
			s := sinkFor(ident(t)+"_out", strings.ReplaceAll(format, "${topic}", t))
			sinks = append(sinks, s)
			cv.p.flows = append(cv.p.flows, fmt.Sprintf("by_topic.%s -> %s", port, s.name))
		}
		cv.p.extra = append(cv.p.extra, sinks...)
		cv.p.chains = []*chain{{source: src, transforms: []*stage{route}}}
		cv.note("table.name.format", "a route sends each topic's records to the sink of its table")
	} else {
		s := sinkFor("out", strings.ReplaceAll(format, "${topic}", cv.topics[0]))
		sinks = []*stage{s}
		cv.p.chains = []*chain{{source: src, sink: s}}
	}
	mode := "insert"
	switch m := cv.get("insert.mode"); m {
	case "", "insert":
	case "upsert":
		mode = "upsert"
	case "update":
		mode = "upsert"
		cv.note("insert.mode", "update became upsert: a record whose row is missing inserts it")
	default:
		return fmt.Errorf("insert.mode %q: one of insert, upsert, update", m)
	}
	var keys []string
	var keyMap []string
	switch pk := cv.get("pk.mode"); pk {
	case "", "none":
		if mode == "upsert" {
			return fmt.Errorf("insert.mode %s needs pk.mode", cv.c.Config["insert.mode"])
		}
	case "record_value":
		keys = list(cv.get("pk.fields"))
		if len(keys) == 0 {
			return fmt.Errorf("pk.mode record_value without pk.fields: name the key fields")
		}
	case "record_key":
		keys = list(cv.get("pk.fields"))
		if len(keys) == 0 {
			// The key's fields are in its schema, which a config does not
			// carry: the sink inserts until they are named.
			cv.note("pk.mode", "record_key without pk.fields: the key's fields are not in the config, so the sink inserts; for %s, name them in key and set them from meta.key in a map", cv.c.Config["insert.mode"])
			mode = "insert"
		}
		for _, k := range keys {
			f, ok := field(k)
			if !ok {
				return fmt.Errorf("pk.fields: %q is not a field name pipe can write", k)
			}
			if len(keys) == 1 && src.get("key_format") != "json" {
				keyMap = append(keyMap, fmt.Sprintf("%s := meta.key", f))
			} else {
				keyMap = append(keyMap, fmt.Sprintf("%s := meta.key.%s", f, f))
			}
		}
	case "kafka":
		keys = list(cv.get("pk.fields"))
		if len(keys) == 0 {
			keys = []string{"__connect_topic", "__connect_partition", "__connect_offset"}
		}
		if len(keys) != 3 {
			return fmt.Errorf("pk.mode kafka takes three pk.fields (topic, partition, offset)")
		}
		for i, m := range []string{"meta.topic", "meta.partition", "meta.offset"} {
			f, ok := field(keys[i])
			if !ok {
				return fmt.Errorf("pk.fields: %q is not a field name pipe can write", keys[i])
			}
			keyMap = append(keyMap, fmt.Sprintf("%s := %s", f, m))
		}
	default:
		return fmt.Errorf("pk.mode %q: one of none, kafka, record_key, record_value", pk)
	}
	if len(keyMap) > 0 {
		m := &stage{reads: &cv.pending, kind: "transform", name: "key_fields", component: "map", body: keyMap}
		c := cv.p.chains[0]
		c.transforms = append([]*stage{m}, c.transforms...)
	}
	for _, s := range sinks {
		if mode != "insert" {
			s.set("mode", mode)
		}
		if len(keys) > 0 {
			s.set("key", quoteList(keys))
		}
		if cv.get("auto.create") == "true" {
			// Connect creates the table from each record's schema; pipe
			// from the pipeline's record type, which a config does not
			// give.
			cv.note("auto.create", "create_table needs a schema: create the table first, or declare a schema for the records and set create_table = true")
		}
		if cv.get("auto.evolve") == "true" {
			s.set("evolve", "add_columns")
		}
		if v := cv.get("batch.size"); v != "" {
			s.set("batch", v)
		}
	}
	if cv.get("delete.enabled") == "true" {
		cv.note("delete.enabled", "tombstones do not delete rows: a second pipeline with mode = delete would")
	}
	for _, k := range []string{"fields.whitelist", "fields.include.list"} {
		if fs := list(cv.get(k)); len(fs) > 0 {
			keep := &stage{reads: &cv.pending, kind: "transform", name: "fields", component: "map", body: []string{"keep " + strings.Join(fs, ", ")}}
			c := cv.p.chains[0]
			c.transforms = append(c.transforms, keep)
		}
	}
	for _, k := range []string{"db.timezone", "dialect.name", "max.retries", "retry.backoff.ms", "quote.sql.identifiers", "connection.attempts", "connection.backoff.ms"} {
		if cv.has(k) {
			cv.used[k] = true
		}
	}
	if cv.has("max.retries") || cv.has("retry.backoff.ms") {
		cv.note("max.retries", "the sink retries a lost connection for retry_timeout (default 5m) instead")
	}
	cv.bestDelivery(comp)
	return nil
}

func (cv *converter) mirror() error {
	src := cv.kafkaStage("source", "in")
	from := cv.get("source.cluster.bootstrap.servers")
	to := cv.get("target.cluster.bootstrap.servers")
	if from == "" || to == "" {
		return fmt.Errorf("source.cluster.bootstrap.servers and target.cluster.bootstrap.servers are required")
	}
	src.set("brokers", quoteList(list(from)))
	topics := list(cv.get("topics"))
	if len(topics) == 0 {
		return fmt.Errorf("no topics")
	}
	for _, t := range topics {
		if regexp.QuoteMeta(t) != t {
			return fmt.Errorf("topics: %q is a pattern; the kafka source reads named topics", t)
		}
	}
	if len(topics) == 1 {
		src.set("topic", quote(topics[0]))
	} else {
		src.set("topics", quoteList(topics))
	}
	src.set("group", quote("mirror-"+cv.c.Name))
	src.set("format", "bytes")
	src.set("key_format", "bytes")
	snk := cv.kafkaStage("sink", "out")
	snk.set("brokers", quoteList(list(to)))
	delete(cv.p.envs, "KAFKA_BROKERS")
	alias := cv.get("source.cluster.alias")
	if alias == "" {
		alias = "source"
	}
	cv.used["target.cluster.alias"] = true
	policy := cv.get("replication.policy.class")
	if strings.HasSuffix(policy, "IdentityReplicationPolicy") {
		snk.set("topic", ":= meta.topic")
	} else {
		sep := cv.get("replication.policy.separator")
		if sep == "" {
			sep = "."
		}
		snk.set("topic", ":= "+quote(alias+sep)+" + meta.topic")
	}
	snk.set("key", ":= meta.key")
	snk.set("headers", ":= meta.headers")
	snk.set("format", "bytes")
	snk.set("partitioner", "source")
	for _, k := range []string{"sync.topic.configs.enabled", "sync.topic.acls.enabled", "emit.checkpoints.enabled", "emit.heartbeats.enabled", "sync.group.offsets.enabled", "refresh.topics.enabled", "refresh.groups.enabled", "replication.factor", "offset-syncs.topic.replication.factor"} {
		if cv.has(k) {
			cv.note(k, "not mirrored: pipe copies records only (topic configs, ACLs, checkpoints and group offsets are not)")
		}
	}
	cv.note("", "target topics must exist with the source's partition count (partitioner = source keeps each record's partition)")
	cv.tasks(src)
	cv.bestDelivery("kafka")
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// errors maps errors.tolerance and the dead-letter queue to on_error.
func (cv *converter) errors() {
	tol := cv.get("errors.tolerance")
	dlq := cv.get("errors.deadletterqueue.topic.name")
	for _, k := range []string{"errors.log.enable", "errors.log.include.messages", "errors.deadletterqueue.context.headers.enable", "errors.deadletterqueue.topic.replication.factor", "errors.retry.timeout", "errors.retry.delay.max.ms"} {
		if cv.has(k) {
			cv.used[k] = true
		}
	}
	if cv.has("errors.log.enable") {
		cv.note("errors.log.enable", "the executor always logs a record error (the stage, the record's position and the error); there is nothing to enable")
	}
	if cv.has("errors.log.include.messages") {
		cv.note("errors.log.include.messages", "a logged record error names the record's position, not its content; a dead-letter sink keeps the record")
	}
	if cv.has("errors.retry.timeout") {
		cv.note("errors.retry.timeout", "a record error is not retried; lost connections are, for retry_timeout")
	}
	if tol != "all" {
		return
	}
	policy, from := "skip", "errors.tolerance"
	if dlq == "" {
		cv.note("errors.tolerance", "all without a dead-letter topic: on_error = skip drops a failed record after logging it (pipe lint warns of it); a dead_letter sink keeps them")
	}
	if dlq != "" {
		from += " + errors.deadletterqueue.topic.name"
		d := cv.kafkaStage("sink", "dlq")
		if b := cv.p.chains[0].source.get("brokers"); cv.p.chains[0].source.component == "kafka" && b != "" {
			d.set("brokers", b)
		}
		d.set("topic", quote(dlq))
		cv.p.extra = append(cv.p.extra, d)
		policy = "dead_letter(dlq)"
		cv.note("errors.deadletterqueue.topic.name", "dead letters carry pipe's envelope (the record, the error and its position) as their value, not the original bytes with error headers")
	}
	for _, c := range cv.p.chains {
		for _, s := range append(append([]*stage{c.source}, c.transforms...), c.sink) {
			if s != nil && s.component != "route" {
				s.onError, s.errFrom = policy, from
			}
		}
	}
	for _, s := range cv.p.extra {
		if s.name != "dlq" {
			s.onError, s.errFrom = policy, from
		}
	}
}

// dsnRef writes a connection string. One that holds no reference (no
// password, or a MySQL one, whose password is an attribute of its own) is
// read from the environment all the same: pipe takes a connection string
// for a credential and keeps it out of files.
func (cv *converter) dsnRef(dsn string) string {
	if strings.Contains(dsn, "${") {
		return quoteRefs(dsn)
	}
	env := envName(cv.c.Name, "dsn")
	cv.p.envs[env] = "the connection string, " + dsn
	return `"${env:` + env + `}"`
}

// debeziumJDBC reads the Debezium JDBC sink's keys as the Confluent JDBC
// sink's that mean the same.
func debeziumJDBC(c *Connector, p *pipeline) {
	var read []string
	for from, to := range map[string]string{"connection.username": "connection.user", "primary.key.mode": "pk.mode", "primary.key.fields": "pk.fields"} {
		if v, ok := c.Config[from]; ok {
			if _, set := c.Config[to]; !set {
				c.Config[to] = v
				delete(c.Config, from)
				read = append(read, from+" as "+to)
			}
		}
	}
	if v, ok := c.Config["schema.evolution"]; ok {
		delete(c.Config, "schema.evolution")
		if v == "basic" {
			c.Config["auto.create"], c.Config["auto.evolve"] = "true", "true"
			read = append(read, "schema.evolution = basic as auto.create and auto.evolve")
		} else {
			read = append(read, "schema.evolution = "+v+" as nothing")
		}
	}
	if len(read) > 0 {
		sort.Strings(read)
		p.header = append(p.header, wrap("The Debezium JDBC sink's keys read as the Confluent sink's: "+strings.Join(read, ", ")+".", 92)...)
	}
}

// common handles keys every connector may carry: the default task count
// and the Confluent licence settings.
func (cv *converter) common() {
	if cv.c.Config["tasks.max"] == "1" {
		cv.used["tasks.max"] = true // one task is what pipe runs by default
	}
	var lic []string
	for _, k := range sortedKeys(cv.c.Config) {
		if !cv.used[k] && (k == "confluent.license" || strings.HasPrefix(k, "confluent.topic.")) {
			lic = append(lic, k)
		}
	}
	for _, k := range lic {
		cv.note(k, "a Confluent licence setting: pipe needs no licence topic")
	}
}

// exactlyOnce maps a source connector's exactly-once settings (Kafka
// 3.3+, KIP-618) onto the pipeline's delivery.
func (cv *converter) exactlyOnce() {
	eos := strings.ToLower(cv.get("exactly.once.support"))
	if cv.has("exactly.once.support") {
		switch {
		case !cv.sourceKind:
			cv.note("exactly.once.support", "a setting of source connectors; the delivery is %s", cv.p.delivery)
		case eos == "required" && cv.p.delivery != "exactly_once":
			cv.note("exactly.once.support", "required, but this source gives %s: pipe's delivery is what the source and sink can honour", cv.p.delivery)
		case eos == "required":
			// Carried over: a note without a key, which --strict accepts.
			cv.p.note("", "exactly.once.support = required: carried by the pipeline's delivery = exactly_once, which pipe check holds the source and sink to")
		default:
			cv.note("exactly.once.support", "%s: the pipeline's delivery is %s, what its source and sink honour", eos, cv.p.delivery)
		}
	}
	for _, k := range []string{"transaction.boundary", "transaction.boundary.interval.ms"} {
		if cv.has(k) {
			cv.note(k, "%s = %s: pipe commits the records of a checkpoint together; its interval is the executor's checkpoint interval", k, shown(k, cv.c.Config[k]))
		}
	}
}

// leftovers notes every key nothing read.
func (cv *converter) leftovers() {
	for _, k := range sortedKeys(cv.c.Config) {
		if !cv.used[k] {
			cv.note(k, "not carried over (%s = %s)", k, shown(k, cv.c.Config[k]))
		}
	}
}

// shown is a config value as a note may show it: never a credential.
func shown(key, v string) string {
	k := strings.ToLower(key)
	for _, w := range []string{"password", "secret", "token", "jaas", "credential", "key"} {
		if strings.Contains(k, w) && !strings.HasSuffix(k, ".converter") {
			return "…"
		}
	}
	return v
}

// s3Sink maps the Confluent S3 sink: its partitioner becomes the sink's
// prefix expression, flush.size and rotate.interval.ms its rotation.
func (cv *converter) s3Sink() error {
	src, snk, err := cv.kafkaTo("s3")
	if err != nil {
		return err
	}
	region := cv.get("s3.region")
	if region == "" {
		region = "us-west-2" // the connector's default
	}
	endpoint := cv.get("store.url")
	if endpoint == "" {
		endpoint = "https://s3." + region + ".amazonaws.com"
	}
	snk.set("endpoint", quote(endpoint))
	bucket := cv.get("s3.bucket.name")
	if bucket == "" {
		return fmt.Errorf("no s3.bucket.name")
	}
	snk.set("bucket", quote(bucket))
	snk.set("region", quote(region))
	if cv.get("s3.path.style.access.enabled") == "true" || cv.get("s3.path.style.access") == "true" {
		snk.set("path_style", "true")
	}
	if cv.has("aws.access.key.id") {
		snk.set("access_key", quoteRefs(cv.secret("aws.access.key.id")))
		snk.set("secret_key", quoteRefs(cv.secret("aws.secret.access.key")))
	} else {
		for _, e := range []string{"S3_ACCESS_KEY", "S3_SECRET_KEY"} {
			cv.p.envs[e] = "the S3 credentials (the connector took them from its provider chain)"
		}
		snk.set("access_key", `"${env:S3_ACCESS_KEY}"`)
		snk.set("secret_key", `"${env:S3_SECRET_KEY}"`)
		cv.used["s3.credentials.provider.class"] = true
	}
	format := cv.get("format.class")
	switch short := format[strings.LastIndexByte(format, '.')+1:]; short {
	case "JsonFormat", "":
	case "ParquetFormat":
		snk.set("format", "parquet")
		codec := cv.get("parquet.codec")
		switch codec {
		case "", "snappy":
		case "gzip", "zstd":
			snk.set("compression", codec)
		case "none", "uncompressed":
			snk.set("compression", "none")
		default:
			cv.note("parquet.codec", "%s is not supported (snappy, gzip, zstd, none): snappy", codec)
		}
		cv.note("format.class", "Parquet columns come from the record type: declare a schema for the records and set schema = Name on the source (the connector took them from Connect schemas); pipe check says so until then")
	default:
		cv.note("format.class", "%s has no counterpart: JSON lines are written", short)
	}
	if v := cv.get("flush.size"); v != "" {
		snk.set("rotate_records", v)
		snk.set("rotate_size", "0B")
	}
	for _, k := range []string{"rotate.interval.ms", "rotate.schedule.interval.ms"} {
		if v := cv.get(k); v != "" && v != "-1" {
			if d, err := millis(v); err == nil {
				snk.set("rotate_interval", d)
			}
			if k == "rotate.schedule.interval.ms" {
				cv.note(k, "rotate_interval counts from each object's first record, not on the wall clock")
			}
		}
	}
	if v := cv.get("s3.part.size"); v != "" {
		snk.set("part_size", v+"B")
	}
	dir := cv.get("topics.dir")
	if dir == "" {
		dir = "topics"
	}
	prefix, err := cv.s3Prefix(dir)
	if err != nil {
		return err
	}
	snk.set("prefix", ":= "+prefix)
	for _, k := range []string{"store.kafka.keys", "store.kafka.headers", "schema.compatibility", "s3.compression.type", "s3.ssea.name", "behavior.on.null.values", "locale", "s3.acl.canned"} {
		if cv.has(k) {
			cv.note(k, "not carried over (%s = %s)", k, shown(k, cv.c.Config[k]))
		}
	}
	for _, k := range []string{"storage.class", "s3.retry.backoff.ms", "s3.part.retries", "retry.backoff.ms"} {
		cv.used[k] = true
	}
	cv.note("", "object names are <prefix><source>.<partition>.<first offset>-<last offset>.<ext>, not <topic>+<partition>+<offset>.<ext>")
	cv.bestDelivery("s3")
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// s3Prefix writes the S3 sink partitioner as a prefix expression.
func (cv *converter) s3Prefix(dir string) (string, error) {
	base := strconv.Quote(dir+"/") + " + meta.topic + \"/\""
	cl := cv.get("partitioner.class")
	switch short := cl[strings.LastIndexByte(cl, '.')+1:]; short {
	case "", "DefaultPartitioner":
		return base + ` + "partition=" + to_string(meta.partition) + "/"`, nil
	case "FieldPartitioner":
		var parts []string
		for _, f := range list(cv.get("partition.field.name")) {
			ff, ok := field(f)
			if !ok {
				return "", fmt.Errorf("partition.field.name: %q is not a field name pipe can read", f)
			}
			parts = append(parts, fmt.Sprintf("%s + to_string(%s) + \"/\"", strconv.Quote(f+"="), ff))
		}
		if len(parts) == 0 {
			return "", fmt.Errorf("FieldPartitioner without partition.field.name")
		}
		return base + " + " + strings.Join(parts, " + "), nil
	case "TimeBasedPartitioner", "DailyPartitioner", "HourlyPartitioner":
		path := cv.get("path.format")
		switch short {
		case "DailyPartitioner":
			path = "'year'=YYYY/'month'=MM/'day'=dd"
		case "HourlyPartitioner":
			path = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
		}
		if path == "" {
			return "", fmt.Errorf("TimeBasedPartitioner without path.format")
		}
		cv.used["partition.duration.ms"] = true
		if tz := cv.get("timezone"); tz != "" && tz != "UTC" {
			cv.note("timezone", "paths are in UTC, not %s", tz)
		}
		ts := "meta.timestamp"
		switch ex := cv.get("timestamp.extractor"); ex {
		case "", "Wallclock":
			ts = "now()"
		case "Record":
		case "RecordField":
			f, ok := field(cv.get("timestamp.field"))
			if !ok {
				return "", fmt.Errorf("timestamp.field: %q is not a field name pipe can read", cv.c.Config["timestamp.field"])
			}
			ts = f
			cv.note("timestamp.field", "the field must hold a timestamp (declare it so in a schema)")
		default:
			return "", fmt.Errorf("timestamp.extractor %s has no counterpart", ex)
		}
		return base + fmt.Sprintf(" + format_time(%s, %s) + \"/\"", ts, strconv.Quote(javaLayout(path))), nil
	}
	return "", fmt.Errorf("partitioner.class %s has no counterpart", cl)
}

// httpSink maps the Confluent HTTP sink.
func (cv *converter) httpSink() error {
	src, snk, err := cv.kafkaTo("http")
	if err != nil {
		return err
	}
	u := cv.get("http.api.url")
	if u == "" {
		return fmt.Errorf("no http.api.url")
	}
	if strings.Contains(u, "${topic}") {
		e := strings.ReplaceAll(strconv.Quote(u), "${topic}", `" + meta.topic + "`)
		e = strings.TrimSuffix(strings.TrimPrefix(e, `"" + `), ` + ""`)
		snk.set("url", ":= "+e)
	} else {
		snk.set("url", quote(u))
	}
	if m := strings.ToUpper(cv.get("request.method")); m != "" && m != "POST" {
		snk.set("method", quote(m))
	}
	if h := cv.get("headers"); h != "" {
		sep := cv.get("header.separator")
		if sep == "" {
			sep = "|"
		}
		var kv []string
		for _, pair := range strings.Split(h, sep) {
			k, v, ok := strings.Cut(pair, ":")
			if !ok {
				return fmt.Errorf("headers: %q is not Name:value", pair)
			}
			kv = append(kv, fmt.Sprintf("%s: %s", strconv.Quote(strings.TrimSpace(k)), strconv.Quote(strings.TrimSpace(v))))
		}
		snk.set("headers", ":= {"+strings.Join(kv, ", ")+"}")
	}
	if n := cv.get("batch.max.size"); n != "" && n != "1" {
		if cv.get("batch.json.as.array") == "true" {
			snk.set("format", "json_array")
		} else {
			snk.set("format", "ndjson")
			cv.note("batch.max.size", "a batch is sent as NDJSON (batch.json.as.array = true sends a JSON array)")
		}
		snk.set("max_batch_records", n)
	}
	cv.used["batch.json.as.array"] = true
	cv.used["header.separator"] = true
	switch strings.ToUpper(cv.get("auth.type")) {
	case "", "NONE":
	case "BASIC":
		snk.set("basic_auth", fmt.Sprintf("{ username = %s password = %s }", cv.str("connection.user"), quoteRefs(cv.secret("connection.password"))))
	default:
		cv.note("auth.type", "%s is not carried over: set bearer_token or basic_auth", cv.c.Config["auth.type"])
	}
	if codes := list(cv.get("retry.on.status.codes")); len(codes) > 0 {
		var ints []string
		for _, c := range codes {
			if _, err := strconv.Atoi(c); err != nil {
				cv.note("retry.on.status.codes", "%q is not a status code: the default list is used", c)
				ints = nil
				break
			}
			ints = append(ints, c)
		}
		if ints != nil {
			snk.set("retry_on", "["+strings.Join(ints, ", ")+"]")
		}
	}
	if cv.has("max.retries") || cv.has("retry.backoff.ms") {
		cv.note("max.retries", "the sink retries with a jittered backoff (honouring Retry-After) for retry_timeout (default 5m) instead")
	}
	if v := cv.get("request.body.format"); v == "string" {
		cv.note("request.body.format", "bodies are JSON")
	}
	cv.bestDelivery("http")
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// amqpURL builds the url of the rabbitmq components from the connector's
// host, port, vhost and credentials (the password as a reference).
func (cv *converter) amqpURL() string {
	host := cv.get("rabbitmq.host")
	if host == "" {
		host = "localhost"
	}
	port := cv.get("rabbitmq.port")
	if port == "" {
		port = "5672"
	}
	user := cv.get("rabbitmq.username")
	if user == "" {
		user = "guest"
	}
	var pass string
	if cv.has("rabbitmq.password") {
		pass = cv.secret("rabbitmq.password")
	} else {
		// The connector's default, guest, is not written into the file.
		env := envName(cv.c.Name, "rabbitmq.password")
		cv.p.envs[env] = "the RabbitMQ password (the connector's default: guest)"
		pass = "${env:" + env + "}"
	}
	vhost := cv.get("rabbitmq.virtual.host")
	if vhost == "/" {
		vhost = ""
	}
	scheme := "amqp"
	if cv.get("rabbitmq.security.protocol") == "SSL" {
		scheme = "amqps"
	}
	return fmt.Sprintf("%s://%s:%s@%s:%s/%s", scheme, url.PathEscape(user), pass, host, port, url.PathEscape(vhost))
}

func (cv *converter) rabbitSource() error {
	cv.sourceKind = true
	queues := list(cv.get("rabbitmq.queue"))
	if len(queues) == 0 {
		return fmt.Errorf("no rabbitmq.queue")
	}
	topic := cv.get("kafka.topic")
	if topic == "" {
		return fmt.Errorf("no kafka.topic")
	}
	u := cv.amqpURL()
	for _, q := range queues {
		name := ident(q)
		s := &stage{reads: &cv.pending, kind: "source", name: name, component: "rabbitmq"}
		s.set("url", quoteRefs(u))
		s.set("queue", quote(q))
		s.set("format", "bytes")
		if v := cv.get("rabbitmq.prefetch.count"); v != "" {
			s.set("prefetch", v)
		}
		snk := cv.kafkaStage("sink", name+"_out")
		snk.set("topic", quote(topic))
		snk.set("format", "bytes")
		cv.p.chains = append(cv.p.chains, &chain{source: s, sink: snk})
	}
	cv.used["rabbitmq.prefetch.global"] = true
	cv.note("", "messages pass as bytes; with format = json on the source, expressions can read their fields")
	// A queue has no offsets: the rabbitmq source is at least once.
	cv.p.delivery = "at_least_once"
	return nil
}

func (cv *converter) rabbitSink() error {
	src, snk, err := cv.kafkaTo("rabbitmq")
	if err != nil {
		return err
	}
	snk.set("url", quoteRefs(cv.amqpURL()))
	snk.set("exchange", cv.str("rabbitmq.exchange"))
	if rk := cv.get("rabbitmq.routing.key"); rk != "" {
		snk.set("routing_key", quote(rk))
	}
	if dm := cv.get("rabbitmq.delivery.mode"); dm == "NON_PERSISTENT" {
		snk.set("persistent", "false")
	}
	cv.bestDelivery("rabbitmq")
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// mqttBrokers is the broker list of the MQTT components.
func (cv *converter) mqttBrokers(s *stage) error {
	uris := list(cv.get("mqtt.server.uri"))
	if len(uris) == 0 {
		return fmt.Errorf("no mqtt.server.uri")
	}
	s.set("brokers", quoteList(uris))
	if cv.has("mqtt.username") {
		s.set("username", cv.str("mqtt.username"))
	}
	if cv.has("mqtt.password") {
		s.set("password", quoteRefs(cv.secret("mqtt.password")))
	}
	if v := cv.get("mqtt.qos"); v != "" {
		s.set("qos", v)
	}
	if v := cv.get("mqtt.clean.session.enabled"); v == "true" {
		cv.note("mqtt.clean.session.enabled", "the source keeps a persistent session (so that nothing is lost between runs)")
	}
	for _, k := range []string{"mqtt.connect.timeout.seconds", "mqtt.keepalive.interval.seconds"} {
		if v := cv.get(k); v != "" {
			name := map[string]string{"mqtt.connect.timeout.seconds": "connect_timeout", "mqtt.keepalive.interval.seconds": "keep_alive"}[k]
			s.set(name, v+"s")
		}
	}
	return nil
}

func (cv *converter) mqttSource() error {
	cv.sourceKind = true
	s := &stage{reads: &cv.pending, kind: "source", name: "messages", component: "mqtt"}
	if err := cv.mqttBrokers(s); err != nil {
		return err
	}
	topics := list(cv.get("mqtt.topics"))
	if len(topics) == 0 {
		return fmt.Errorf("no mqtt.topics")
	}
	if len(topics) == 1 {
		s.set("topic", quote(topics[0]))
	} else {
		s.set("topics", quoteList(topics))
	}
	s.set("format", "bytes")
	topic := cv.get("kafka.topic")
	if topic == "" {
		return fmt.Errorf("no kafka.topic")
	}
	snk := cv.kafkaStage("sink", "out")
	snk.set("topic", quote(topic))
	snk.set("format", "bytes")
	cv.used["mqtt.client.id"] = true
	cv.note("", "messages pass as bytes; with format = json on the source, expressions can read their fields")
	cv.p.delivery = "at_least_once" // MQTT has no offsets: the source is at least once
	cv.p.chains = []*chain{{source: s, sink: snk}}
	return nil
}

func (cv *converter) mqttSink() error {
	src, snk, err := cv.kafkaTo("mqtt")
	if err != nil {
		return err
	}
	if err := cv.mqttBrokers(snk); err != nil {
		return err
	}
	snk.set("topic", ":= meta.topic") // the connector publishes on the record's Kafka topic
	if cv.get("mqtt.retain.enabled") == "true" {
		snk.set("retain", "true")
	}
	cv.bestDelivery("mqtt")
	cv.p.delivery = "at_least_once"
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// redisSink maps the common Redis sink (SET of each record's key to its
// value).
func (cv *converter) redisSink() error {
	src, snk, err := cv.kafkaTo("redis")
	if err != nil {
		return err
	}
	hosts := list(cv.get("redis.hosts"))
	if len(hosts) > 1 {
		cv.note("redis.hosts", "one server is written to: %s", hosts[0])
	}
	if len(hosts) > 0 {
		snk.set("addr", quote(hosts[0]))
	}
	if cv.has("redis.password") {
		snk.set("password", quoteRefs(cv.secret("redis.password")))
	}
	if v := cv.get("redis.database"); v != "" {
		snk.set("db", v)
	}
	snk.set("command", "set")
	snk.set("key", ":= to_string(meta.key)") // the value is stored as JSON, the sink's default
	cv.bestDelivery("redis")
	cv.p.chains = []*chain{{source: src, sink: snk}}
	return nil
}

// debeziumPostgres maps Debezium's PostgreSQL connector onto the
// postgres_cdc source: changes streamed from a logical replication slot
// into a topic per table.
func (cv *converter) debeziumPostgres() error {
	cv.sourceKind = true
	host, db := cv.get("database.hostname"), cv.get("database.dbname")
	if host == "" || db == "" {
		return fmt.Errorf("database.hostname and database.dbname are required")
	}
	port := cv.get("database.port")
	if port == "" {
		port = "5432"
	}
	user := cv.get("database.user")
	userinfo := url.PathEscape(user)
	if cv.has("database.password") {
		userinfo += ":" + cv.secret("database.password")
	}
	if userinfo != "" {
		userinfo += "@"
	}
	dsn := "postgres://" + userinfo + host + ":" + port + "/" + db
	if m := cv.get("database.sslmode"); m != "" {
		dsn += "?sslmode=" + m
	}
	if p := cv.get("plugin.name"); p != "" && p != "pgoutput" {
		cv.note("plugin.name", "%s is not supported: pgoutput is used", p)
	}
	s := &stage{kind: "source", name: "changes", component: "postgres_cdc"}
	s.set("dsn", quoteRefs(dsn))
	slot := cv.get("slot.name")
	if slot == "" {
		slot = "debezium"
	}
	s.set("slot", quote(slot))
	pub := cv.get("publication.name")
	if pub == "" {
		pub = "dbz_publication"
	}
	s.set("publication", quote(pub))
	tables := list(cv.get("table.include.list"))
	tables = append(tables, list(cv.get("table.whitelist"))...)
	if len(tables) > 0 {
		s.set("tables", quoteList(tables))
	}
	if ms := cv.get("heartbeat.interval.ms"); ms != "" {
		if n, err := strconv.Atoi(ms); err == nil && n >= 0 {
			s.set("heartbeat", fmt.Sprintf("%dms", n))
			cv.used["heartbeat.interval.ms"] = true
		}
	}
	switch mode := cv.get("snapshot.mode"); mode {
	case "", "initial": // the source's default: the rows, then the changes
	case "never", "no_data":
		s.set("snapshot", "never")
	default:
		cv.note("snapshot.mode", "%s is not supported: the tables are read once, when the slot is created (initial), then streamed", mode)
	}
	prefix := cv.get("topic.prefix")
	if prefix == "" {
		prefix = cv.get("database.server.name")
	}
	if prefix == "" {
		return fmt.Errorf("no topic.prefix")
	}
	snk := cv.kafkaStage("sink", "out")
	// Debezium's topic is <prefix>.<schema>.<table>; a change's table is
	// schema-qualified.
	snk.set("topic", ":= "+strconv.Quote(prefix+".")+" + table")
	snk.set("key", ":= meta.key")
	cv.format(snk)
	if snk.get("format") == "" {
		snk.set("format", "debezium")
		cv.note("", "records are written as Debezium's envelope ({before, after, source, op, ts_ms}) with the rows' values as pipe's json format writes them (timestamps as RFC 3339 text), and source.db null")
	} else {
		cv.note("", "records are pipe's change records ({op, table, xid, lsn, commit_time, before, after}), not Debezium's envelope ({before, after, source, op, ts_ms}); op is insert, update, delete or truncate rather than c, u, d, t")
	}
	for _, k := range []string{"database.server.name", "schema.include.list", "publication.autocreate.mode", "slot.drop.on.stop", "heartbeat.interval.ms", "decimal.handling.mode", "time.precision.mode", "tombstones.on.delete"} {
		if cv.has(k) && !cv.used[k] {
			cv.note(k, "not carried over (%s = %s)", k, shown(k, cv.c.Config[k]))
		}
	}
	cv.used["tasks.max"] = true
	cv.bestDelivery("kafka")
	cv.p.chains = []*chain{{source: s, sink: snk}}
	return nil
}
