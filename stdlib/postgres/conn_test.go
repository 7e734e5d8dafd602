package postgres

import (
	"strings"
	"testing"
)

// A password with the characters a URL reserves works percent-encoded, and
// otherwise gives an error that shows no piece of the connection string.
func TestParseDSN(t *testing.T) {
	for _, c := range []struct{ dsn, password, err string }{
		{"postgres://u:Zq7Kx%40Vb9Wm%2FHj4Lp%23Tn6Rc%25%20Yd8@h:5432/db", "Zq7Kx@Vb9Wm/Hj4Lp#Tn6Rc% Yd8", ""},
		{"postgres://u:Zq7Kx?Vb9Wm#Hj4Lp@h/db", "Zq7Kx?Vb9Wm#Hj4Lp", ""}, // only "@" and "/" end the user-info
		{"postgres://h/db?user=Zq7Kx@Vb9Wm", "", ""},
		{"host=h password='Zq7Kx Vb9Wm/#@%' dbname=db", "Zq7Kx Vb9Wm/#@%", ""},
		{"postgres://u:Zq7Kx@Vb9Wm@h/db", "", `"@" in its host or database name`},
		{"postgresql://u:Zq7Kx/Vb9Wm@h/db", "", `"@" in its host or database name`},
		{"postgres://u:12/Zq7Kx@Vb9Wm/db", "", `"@" in its host or database name`},
		{"postgres://u:Zq7Kx%Vb9Wm@h/db", "", "cannot parse"},
		{"host=h password=Zq7Kx Vb9Wm dbname=db", "", "cannot parse"},
	} {
		cfg, err := parseDSN(c.dsn)
		switch {
		case c.err == "" && (err != nil || cfg.Password != c.password):
			t.Errorf("%s: error %v, password %q; want %q", c.dsn, err, cfg.Password, c.password)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want %q", c.dsn, err, c.err)
		case err != nil && (strings.Contains(err.Error(), "Zq7Kx") || strings.Contains(err.Error(), "Vb9Wm")):
			t.Errorf("%s: the error shows the password: %v", c.dsn, err)
		}
	}
}
