package stdlib

import "time"

// Positive returns an error for each of the named attributes that is set
// to an int or a duration not above zero ("batch must be positive"): the
// check of counts, sizes and waits that many Specs' Check make.
func Positive(attrs map[string]any, names ...string) []AttrError {
	var errs []AttrError
	for _, name := range names {
		var bad bool
		switch v := attrs[name].(type) {
		case int64:
			bad = v <= 0
		case time.Duration:
			bad = v <= 0
		}
		if bad {
			errs = append(errs, AttrError{Attr: name, Message: name + " must be positive"})
		}
	}
	return errs
}
