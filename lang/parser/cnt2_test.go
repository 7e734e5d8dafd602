package parser
import ("fmt"; "strings")
func genForCount() []byte { return genForCount0(1000) }
func genForCount0(n int) []byte {
	var b strings.Builder
	b.WriteString("// generated\npipeline gen {\n  delivery = at_least_once\n}\n\n")
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "source s%d: kafka {\n  brokers = [\"${env:KAFKA_BROKERS}\"]\n  topic   = \"t%d\"\n  format  = json\n  poll    = 250ms\n}\n\n", i, i)
		case 1:
			fmt.Fprintf(&b, "transform f%d: filter {\n  where amount > %d && status == \"PAID\" // paid only\n}\n\n", i, i)
		case 2:
			fmt.Fprintf(&b, "transform m%d: map {\n  keep id, amount\n  total: float := amount * (1 + tax[\"rate\"])\n  tag          := upper(status)\n  on_error = retry(max = 3, backoff = 1s)\n}\n\n", i)
		case 3:
			fmt.Fprintf(&b, "sink k%d: postgres {\n  dsn   = \"${env:PG_DSN}\"\n  table = \"t%d\"\n  batch = 1MiB\n}\n\ns%d -> f%d -> m%d -> k%d\n\n", i, i, i-3, i-2, i-1, i)
		}
	}
	return []byte(b.String())
}
