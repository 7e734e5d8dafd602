package httpconn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// The benchmarks count records (b.N) and report records/s. Run them with
//
//	go test -run '^$' -bench . -benchtime 200000x ./stdlib/http/
//
// Each pair measures the connector beside a plain net/http loop doing the
// same job against the same server in the same run.

const (
	benchClients    = 16 // concurrent senders
	benchPerRequest = 10 // records per request posted to a server
)

// benchBody is an NDJSON body of benchPerRequest records.
func benchBody(i int) []byte {
	var b bytes.Buffer
	for j := range benchPerRequest {
		fmt.Fprintf(&b, "{\"id\":%d,\"user\":\"u%d\",\"amount\":%d.5,\"country\":\"NL\"}\n", i*benchPerRequest+j, j, j)
	}
	return b.Bytes()
}

// postKeyed posts body with an idempotency key and wants a 200.
func postKeyed(client *http.Client, url, key string, body io.Reader) error {
	req, _ := http.NewRequest("POST", url, body)
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// postAll posts n/benchPerRequest requests to url from benchClients
// goroutines, each with an idempotency key, and fails b on a non-2xx.
func postAll(b *testing.B, url string, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}}
	defer client.CloseIdleConnections()
	reqs := n / benchPerRequest
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= reqs {
					return
				}
				if err := postKeyed(client, url, fmt.Sprintf("k%d", i), bytes.NewReader(benchBody(i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkServerSource: clients post NDJSON requests to http_server,
// whose Read loop commits every batch as soon as it was read (an instant
// checkpoint: the figure is the source's own cost, the position log synced
// once per batch included; in a pipeline a request waits for the
// checkpoint interval on top).
func BenchmarkServerSource(b *testing.B) {
	vals, _ := ServerSourceSpec.Values(map[string]any{"listen": "127.0.0.1:0", "path": "/in", "format": stdlib.Ident("ndjson"), "max_pending": int64(10000)})
	s, err := newServer(stdlib.Config{Stage: "in", Attrs: vals, Tasks: 1, StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(context.Background(), stdlib.ResumeMap{}); err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	s.readWait = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			recs, err := s.Read(ctx)
			if err != nil {
				return
			}
			if len(recs) > 0 {
				got.Add(int64(len(recs)))
				s.Commit(ctx, []stdlib.Position{recs[len(recs)-1].Pos})
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	postAll(b, "http://"+s.Addr()+"/in", b.N)
	b.ReportMetric(float64(got.Load())/time.Since(start).Seconds(), "records/s")
	cancel()
	<-done
}

// BenchmarkServerPlain: the same requests to a plain net/http handler that
// decodes each NDJSON line with encoding/json and answers 200 at once
// (nothing made durable).
func BenchmarkServerPlain(b *testing.B) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			var v map[string]any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				w.WriteHeader(400)
				return
			}
			got.Add(1)
		}
	}))
	defer srv.Close()
	b.ResetTimer()
	start := time.Now()
	postAll(b, srv.URL, b.N)
	b.ReportMetric(float64(got.Load())/time.Since(start).Seconds(), "records/s")
}

// receiver counts the records of the requests it gets (JSON or NDJSON).
func receiver() (*httptest.Server, *atomic.Int64) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.Add(int64(bytes.Count(body, []byte("\"id\""))))
	}))
	return srv, &got
}

func benchRecords(n int) []stdlib.Record {
	out := make([]stdlib.Record, n)
	for i := range out {
		out[i] = stdlib.Record{Value: map[string]any{"id": int64(i), "user": "u1", "amount": 1.5, "country": "NL"},
			Pos: stdlib.Position{Source: "s", Partition: "p", Offset: int64(i)}}
	}
	return out
}

// BenchmarkSink: the http sink sending batches of 1000 records, one
// request per record (json) or 100 per request (ndjson), 16 requests in
// flight.
func BenchmarkSink(b *testing.B) {
	for _, format := range []string{"json", "ndjson"} {
		b.Run(format, func(b *testing.B) {
			srv, got := receiver()
			defer srv.Close()
			vals, _ := SinkSpec.Values(map[string]any{"url": srv.URL, "format": stdlib.Ident(format), "max_batch_records": int64(100), "concurrency": int64(benchClients)})
			s, err := newSink(stdlib.Config{Pipeline: "p", Stage: "out", Attrs: vals, Tasks: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			batch := benchRecords(1000)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i += len(batch) {
				if err := s.Write(context.Background(), batch[:min(len(batch), b.N-i)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(got.Load())/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkSinkPlain: a plain loop of 16 goroutines encoding the same
// records with encoding/json and posting them, one per request (json) or
// 100 per request (ndjson).
func BenchmarkSinkPlain(b *testing.B) {
	for _, format := range []string{"json", "ndjson"} {
		b.Run(format, func(b *testing.B) {
			srv, got := receiver()
			defer srv.Close()
			per := 1
			if format == "ndjson" {
				per = 100
			}
			recs := benchRecords(b.N)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}}
			defer client.CloseIdleConnections()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range benchClients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(int64(per))) - per
						if i >= len(recs) {
							return
						}
						var body bytes.Buffer
						enc := json.NewEncoder(&body)
						for _, r := range recs[i:min(i+per, len(recs))] {
							enc.Encode(r.Value)
						}
						if err := postKeyed(client, srv.URL, fmt.Sprint(i), &body); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(got.Load())/time.Since(start).Seconds(), "records/s")
		})
	}
}
