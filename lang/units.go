package lang

import "time"

var (
	durationUnits = map[string]time.Duration{
		"ns": time.Nanosecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour,
	}
	sizeUnits = map[string]int64{
		"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	}
)

// DurationUnit returns the length of a duration literal's unit: ns, us,
// ms, s, m, h or d (24h). The lexer classifies literals by it and
// stdlib.ParseDuration reads them by it.
func DurationUnit(u string) (time.Duration, bool) { d, ok := durationUnits[u]; return d, ok }

// SizeUnit returns the bytes of a size literal's unit: B, KB, MB, GB, TB
// (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024). The lexer
// classifies literals by it and stdlib.ParseSize reads them by it.
func SizeUnit(u string) (int64, bool) { n, ok := sizeUnits[u]; return n, ok }
