package core

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"pipe.dev/pipe/stdlib"
)

// defaultFingerprint is how many leading bytes of a file the file source
// fingerprints by default (as Filebeat does).
const defaultFingerprint = 1024

// fileID is the identity of a partition of the file source: what its
// offsets point into. A partition is the content of one file, wherever the
// file is: it is known by the SHA-256 of its first n bytes, so that a file
// renamed, moved or copied (copytruncate rotation) keeps its partition and
// a file replaced by another gets a new one. A partition made while its
// file was shorter than the fingerprint length is bound to the file's
// device and inode as well, for a short prefix is too common to tell files
// apart by; it becomes one known by content alone (a new partition that
// continues it at offset from) once the file is long enough.
//
// Its text form, stored with every position, is sha256:SUM/N, followed by
// @DEV:INO when bound to an inode and +FROM when it continues another
// partition from that offset.
type fileID struct {
	sum   string // the first 16 hex digits of the SHA-256 of the first n bytes
	n     int64
	bound bool // bound to dev and ino
	key   fileKey
	from  int64
}

// fileKey is a file's device and inode.
type fileKey struct{ dev, ino uint64 }

func keyOf(fi os.FileInfo) fileKey {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	}
	return fileKey{}
}

func (id fileID) String() string {
	s := fmt.Sprintf("sha256:%s/%d", id.sum, id.n)
	if id.bound {
		s += fmt.Sprintf("@%d:%d", id.key.dev, id.key.ino)
	}
	if id.from > 0 {
		s += "+" + strconv.FormatInt(id.from, 10)
	}
	return s
}

// parseFileID parses the text form of a fileID.
func parseFileID(s string) (fileID, bool) {
	var id fileID
	rest, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return id, false
	}
	var err error
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		if id.from, err = strconv.ParseInt(rest[i+1:], 10, 64); err != nil || id.from <= 0 {
			return id, false
		}
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		dev, ino, ok := strings.Cut(rest[i+1:], ":")
		if !ok {
			return id, false
		}
		if id.key.dev, err = strconv.ParseUint(dev, 10, 64); err != nil {
			return id, false
		}
		if id.key.ino, err = strconv.ParseUint(ino, 10, 64); err != nil {
			return id, false
		}
		id.bound = true
		rest = rest[:i]
	}
	sum, n, ok := strings.Cut(rest, "/")
	if !ok || len(sum) != 16 {
		return id, false
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return id, false
	}
	if id.n, err = strconv.ParseInt(n, 10, 64); err != nil || id.n <= 0 {
		return id, false
	}
	id.sum = sum
	return id, true
}

// prefixes hashes the leading bytes of one open file, each length once.
type prefixes struct {
	f    *os.File
	size int64
	sums map[int64]string
}

// sum returns the fingerprint of the first n bytes; ok is false when the
// file is shorter.
func (p *prefixes) sum(n int64) (string, bool, error) {
	if n > p.size || n <= 0 {
		return "", false, nil
	}
	if s, ok := p.sums[n]; ok {
		return s, true, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(p.f, 0, n)); err != nil {
		return "", false, err
	}
	s := hex.EncodeToString(h.Sum(nil)[:8])
	if p.sums == nil {
		p.sums = map[int64]string{}
	}
	p.sums[n] = s
	return s, true, nil
}

// endsLine reports whether off is where a line of the file ends: 0, the
// file's end, or just after a newline.
func (p *prefixes) endsLine(off int64) (bool, error) {
	switch {
	case off == 0 || off == p.size:
		return true, nil
	case off < 0 || off > p.size:
		return false, nil
	}
	var b [1]byte
	if _, err := p.f.ReadAt(b[:], off-1); err != nil {
		return false, err
	}
	return b[0] == '\n', nil
}

// matches reports whether the file p reads, with key k, holds what id
// points into.
func (p *prefixes) matches(id fileID, k fileKey) (bool, error) {
	if id.bound && id.key != k {
		return false, nil
	}
	sum, ok, err := p.sum(id.n)
	return ok && sum == id.sum, err
}

// fileStream is a partition of the file source: the content of one file,
// read from whichever file holds it now.
type fileStream struct {
	name    string
	id      fileID
	ident   string // id's text, as stored ("" for legacy)
	legacy  bool   // stored before identities: named by a path, matched by it
	stored  int64  // highest offset stored for it when the run started; -1: none
	resumed bool   // Resume was called for it in this run
	done    bool   // its file was truncated or rewritten: no file continues it
	off     int64  // end of its last record emitted
	file    *tailFile
}

// newStream returns a partition made in this run.
func newStream(name string, id fileID) *fileStream {
	return &fileStream{name: name, id: id, ident: id.String(), stored: -1}
}

// streamName names a new partition: the path its file had when first read
// and a hash of its identity, unique.
func streamName(path string, id fileID) string {
	h := sha256.Sum256([]byte(id.String()))
	return path + "#" + hex.EncodeToString(h[:4])
}

// storedStreams builds the partitions stored for stage from what the
// checkpoint store and the sinks hold (several holders per partition).
func storedStreams(stage string, positions []stdlib.Position) []*fileStream {
	byName := map[string]*fileStream{}
	var out []*fileStream
	for _, p := range positions {
		if p.Source != stage {
			continue
		}
		st := byName[p.Partition]
		if st == nil {
			st = &fileStream{name: p.Partition, stored: -1, legacy: true}
			byName[p.Partition] = st
			out = append(out, st)
		}
		st.stored = max(st.stored, p.Offset)
		if p.Identity == "" {
			continue
		}
		// An identity that does not parse matches no file.
		if id, ok := parseFileID(p.Identity); ok {
			st.id = id
		}
		st.ident, st.legacy = p.Identity, false
	}
	return out
}
