package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/stdlib"
)

// SetPositions implements stdlib.SourcePositionStore. A source with a
// group resumes a partition at the group's committed offset when neither
// the state store nor an exactly-once sink of this process holds it (a
// later generation, another process), so `pipe offsets` changes that too:
// reset deletes the group's offsets of the partitions (of every topic read
// when reset is empty), so that they start as `start` says; set commits
// the offset just after each position. The broker refuses while the group
// has members: the pipeline must be stopped in every process.
func (s *source) SetPositions(ctx context.Context, reset []string, set []stdlib.Position) error {
	if s.group == "" {
		return nil
	}
	if s.link == nil {
		s.link = newLink(s.conn)
		defer func() {
			s.link.close()
			s.link = nil
		}()
	}
	del := map[string][]int{}
	if len(reset) == 0 {
		var meta map[string][]kafka.Partition
		err := s.do(ctx, func(cl *kafka.Client) (err error) {
			meta, err = partitions(ctx, cl, s.topics...)
			return err
		})
		if err != nil {
			return err
		}
		for t, ps := range meta {
			for _, p := range ps {
				del[t] = append(del[t], p.ID)
			}
		}
	}
	for _, k := range reset {
		t, n, ok := parsePartKey(k)
		if !ok {
			return fmt.Errorf("partition %q is not topic/N", k)
		}
		del[t] = append(del[t], n)
	}
	commit := map[string][]kafka.OffsetCommit{}
	for _, p := range set {
		t, n, ok := parsePartKey(p.Partition)
		if !ok {
			return fmt.Errorf("partition %q is not topic/N", p.Partition)
		}
		commit[t] = append(commit[t], kafka.OffsetCommit{Partition: n, Offset: p.Offset + 1})
	}
	// A group with members is not waited for (the broker calls some of
	// these errors retriable).
	stopped := func(err error) error {
		if errors.Is(err, kafka.NonEmptyGroup) || errors.Is(err, kafka.GroupSubscribedToTopic) ||
			errors.Is(err, kafka.UnknownMemberId) || errors.Is(err, kafka.IllegalGeneration) || errors.Is(err, kafka.RebalanceInProgress) {
			return fmt.Errorf("group %q has members: stop the pipeline in every process and try again (%w)", s.group, errMembers)
		}
		return err
	}
	// Brokers refuse some of the changes while the group has members,
	// not all: asked first, so that a running pipeline never sees its
	// offsets change under it.
	var members int
	err := s.do(ctx, func(cl *kafka.Client) error {
		res, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{s.group}})
		if err != nil {
			return err
		}
		members = 0
		for _, g := range res.Groups {
			if g.Error != nil && !errors.Is(g.Error, kafka.GroupIdNotFound) {
				return g.Error
			}
			members += len(g.Members)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("describe group %q: %w", s.group, err)
	}
	if members > 0 {
		return stopped(kafka.NonEmptyGroup)
	}
	if len(del) > 0 {
		err := s.do(ctx, func(cl *kafka.Client) error {
			res, err := cl.OffsetDelete(ctx, &kafka.OffsetDeleteRequest{GroupID: s.group, Topics: del})
			if err != nil {
				return err
			}
			if res.Error != nil {
				return stopped(res.Error)
			}
			for _, ps := range res.Topics {
				for _, p := range ps {
					if p.Error != nil && !errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
						return stopped(p.Error)
					}
				}
			}
			return nil
		})
		switch {
		case errors.Is(err, kafka.GroupIdNotFound):
			// Nothing committed.
		case errors.Is(err, errMembers):
			return err
		case err != nil:
			return fmt.Errorf("delete group %q offsets: %w", s.group, err)
		}
	}
	if len(commit) > 0 {
		err := s.do(ctx, func(cl *kafka.Client) error {
			// Generation -1 and no member: an administrative commit,
			// which the broker takes only while the group is empty.
			res, err := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: s.group, GenerationID: -1, Topics: commit})
			if err != nil {
				return err
			}
			for _, ps := range res.Topics {
				for _, p := range ps {
					if p.Error != nil {
						return stopped(p.Error)
					}
				}
			}
			return nil
		})
		switch {
		case errors.Is(err, errMembers):
			return err
		case err != nil:
			return fmt.Errorf("commit group %q offsets: %w", s.group, err)
		}
	}
	return nil
}

// errMembers is wrapped by SetPositions' error when the group has members.
var errMembers = errors.New("group not empty")
