// Package examples holds runnable .pipe pipelines. Its tests compile every
// example clean, check that each broken example in bad/ gives exactly the
// diagnostics listed in its .want file, run every example's inline tests,
// and run the quickstart end to end.
package examples
