package schemareg

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"
)

// The calls below serve the formats whose schemas the registry keeps as
// text that pipe compiles itself (Protobuf, JSON Schema); they are not
// cached: a format caches what it compiles.

// ByID returns the schema of id as the registry holds it.
func (c *Client) ByID(ctx context.Context, id int) (sr.Schema, error) {
	s, err := c.cl.SchemaByID(ctx, id)
	if err != nil {
		if notFound(err) {
			return sr.Schema{}, fmt.Errorf("schema id %d is not in the registry", id)
		}
		return sr.Schema{}, fmt.Errorf("schema id %d: %w", id, err)
	}
	return s, nil
}

// ByVersion returns version v (-1: the latest) of subject as the registry
// holds it.
func (c *Client) ByVersion(ctx context.Context, subject string, v int) (sr.SubjectSchema, error) {
	ss, err := c.cl.SchemaByVersion(ctx, subject, v)
	if err != nil {
		if notFound(err) {
			if v < 0 {
				return ss, fmt.Errorf("subject %q has no schema in the registry", subject)
			}
			return ss, fmt.Errorf("subject %q has no version %d in the registry", subject, v)
		}
		return ss, fmt.Errorf("subject %q: %w", subject, err)
	}
	return ss, nil
}

// References returns the texts of the schemas refs name, and of those
// they reference in turn, by reference name.
func (c *Client) References(ctx context.Context, refs []sr.SchemaReference) (map[string]string, error) {
	out := map[string]string{}
	return out, c.references(ctx, refs, out, 0)
}

func (c *Client) references(ctx context.Context, refs []sr.SchemaReference, out map[string]string, depth int) error {
	if depth > 32 {
		return errors.New("schema references nest too deeply")
	}
	for _, r := range refs {
		if _, ok := out[r.Name]; ok {
			continue
		}
		ss, err := c.cl.SchemaByVersion(ctx, r.Subject, r.Version)
		if err != nil {
			return fmt.Errorf("reference %q (subject %q version %d): %w", r.Name, r.Subject, r.Version, err)
		}
		out[r.Name] = ss.Schema.Schema
		if err := c.references(ctx, ss.References, out, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// Create registers s under subject (the registry checks compatibility)
// and returns its id and version.
func (c *Client) Create(ctx context.Context, subject string, s sr.Schema) (id, version int, err error) {
	ss, err := c.cl.CreateSchema(ctx, subject, s)
	if err != nil {
		return 0, 0, fmt.Errorf("register under subject %q: %w", subject, err)
	}
	return ss.ID, ss.Version, nil
}
