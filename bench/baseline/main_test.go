package main

import (
	"testing"

	"pipe.dev/pipe/bench/internal/looptest"
)

func TestTransform(t *testing.T) { looptest.Transform(t, transform) }
