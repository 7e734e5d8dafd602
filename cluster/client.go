package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"pipe.dev/pipe/exec"
)

// Client speaks to a cluster through the REST API of any of its workers.
type Client struct {
	URL  string // a worker's base URL, http://host:port
	HTTP *http.Client
}

// Rejected is the error of a PUT of a pipeline that does not compile: its
// diagnostics in the JSON format of `pipe check --format json`.
type Rejected struct {
	JSON []byte
}

func (e *Rejected) Error() string { return "the cluster rejected the pipeline: it does not compile" }

// NotFound is the error for a pipeline the cluster does not hold.
type NotFound struct{ Msg string }

func (e *NotFound) Error() string { return e.Msg }

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	return c.doType(ctx, method, path, "text/plain; charset=utf-8", body, out)
}

// doType is do with the body's Content-Type.
func (c *Client) doType(ctx context.Context, method, path, ctype string, body []byte, out any) (int, error) {
	base := strings.TrimRight(c.URL, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	switch {
	case resp.StatusCode == http.StatusUnprocessableEntity:
		return resp.StatusCode, &Rejected{JSON: data}
	case resp.StatusCode >= 300:
		var e apiError
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusNotFound {
			return resp.StatusCode, &NotFound{Msg: e.Error}
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func pipelinePath(name string) string { return "/pipelines/" + url.PathEscape(name) }

// Deploy submits a pipeline's .pipe text; file is the name its
// diagnostics use.
func (c *Client) Deploy(ctx context.Context, name, file string, src []byte) (Deployed, error) {
	var out Deployed
	_, err := c.do(ctx, http.MethodPut, pipelinePath(name)+"?file="+url.QueryEscape(file), src, &out)
	return out, err
}

// DeployBundle submits a pipeline's .pipe text with the files it imports
// ([ImportedFiles]); file is the name its diagnostics use.
func (c *Client) DeployBundle(ctx context.Context, name, file string, src []byte, imports map[string]string) (Deployed, error) {
	body, err := json.Marshal(Bundle{File: file, Source: string(src), Imports: imports})
	if err != nil {
		return Deployed{}, err
	}
	var out Deployed
	_, err = c.doType(ctx, http.MethodPut, pipelinePath(name), "application/json", body, &out)
	return out, err
}

// Undeploy removes a pipeline: its instances stop.
func (c *Client) Undeploy(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, pipelinePath(name), nil, nil)
	return err
}

// Status returns a pipeline's instances.
func (c *Client) Status(ctx context.Context, name string) (PipelineStatus, error) {
	var out PipelineStatus
	_, err := c.do(ctx, http.MethodGet, pipelinePath(name)+"/status", nil, &out)
	return out, err
}

// Pipelines returns every pipeline of the cluster with its instances.
func (c *Client) Pipelines(ctx context.Context) ([]PipelineStatus, error) {
	var out []PipelineStatus
	_, err := c.do(ctx, http.MethodGet, "/pipelines", nil, &out)
	return out, err
}

// Definition returns a pipeline's stored definition.
func (c *Client) Definition(ctx context.Context, name string) (Definition, error) {
	var out Definition
	_, err := c.do(ctx, http.MethodGet, pipelinePath(name), nil, &out)
	return out, err
}

// Workers returns the members of the cluster's current generation.
func (c *Client) Workers(ctx context.Context) (Workers, error) {
	var out Workers
	_, err := c.do(ctx, http.MethodGet, "/workers", nil, &out)
	return out, err
}

// Pause pauses a pipeline: its instances stop reading (each drains and
// checkpoints) and show "paused" until Resume.
func (c *Client) Pause(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodPost, pipelinePath(name)+"/pause", nil, nil)
	return err
}

// Resume starts a paused pipeline's instances again.
func (c *Client) Resume(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodPost, pipelinePath(name)+"/resume", nil, nil)
	return err
}

// Offsets returns the positions a pipeline resumes from, per source
// partition and holder.
func (c *Client) Offsets(ctx context.Context, name string) (exec.OffsetsReport, error) {
	var out exec.OffsetsReport
	_, err := c.do(ctx, http.MethodGet, pipelinePath(name)+"/offsets", nil, &out)
	return out, err
}

// SetOffsets changes the positions of a paused pipeline and returns them
// after.
func (c *Client) SetOffsets(ctx context.Context, name string, change []OffsetChange) (exec.OffsetsReport, error) {
	body, err := json.Marshal(OffsetsChange{Offsets: change})
	if err != nil {
		return exec.OffsetsReport{}, err
	}
	var out exec.OffsetsReport
	_, err = c.do(ctx, http.MethodPatch, pipelinePath(name)+"/offsets", body, &out)
	return out, err
}

// ResetOffsets forgets the positions of a paused pipeline: of every source
// when source is "", else of source (only of partitions, when given).
func (c *Client) ResetOffsets(ctx context.Context, name, source string, partitions []string) (exec.OffsetsReport, error) {
	q := url.Values{}
	if source != "" {
		q.Set("source", source)
		q["partition"] = partitions
	}
	path := pipelinePath(name) + "/offsets"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out exec.OffsetsReport
	_, err := c.do(ctx, http.MethodDelete, path, nil, &out)
	return out, err
}
