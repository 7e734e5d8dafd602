package lang

import "time"

// DurationUnit returns the length of a duration literal's unit: ns, us,
// ms, s, m, h or d (24h). The lexer classifies literals by it and
// stdlib.ParseDuration reads them by it.
func DurationUnit(u string) (time.Duration, bool) {
	switch u {
	case "ns":
		return time.Nanosecond, true
	case "us":
		return time.Microsecond, true
	case "ms":
		return time.Millisecond, true
	case "s":
		return time.Second, true
	case "m":
		return time.Minute, true
	case "h":
		return time.Hour, true
	case "d":
		return 24 * time.Hour, true
	}
	return 0, false
}

// SizeUnit returns the bytes of a size literal's unit: B, KB, MB, GB, TB
// (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024). The lexer
// classifies literals by it and stdlib.ParseSize reads them by it.
func SizeUnit(u string) (int64, bool) {
	switch u {
	case "B":
		return 1, true
	case "KB":
		return 1e3, true
	case "MB":
		return 1e6, true
	case "GB":
		return 1e9, true
	case "TB":
		return 1e12, true
	case "KiB":
		return 1 << 10, true
	case "MiB":
		return 1 << 20, true
	case "GiB":
		return 1 << 30, true
	case "TiB":
		return 1 << 40, true
	}
	return 0, false
}
