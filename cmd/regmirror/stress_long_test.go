//go:build stress

package main

import (
	"os"
	"testing"
	"time"
)

// TestStress is `make stress`: the stress run of TestStressSmoke for
// REGMIRROR_STRESS_DURATION (default 8 minutes) with images of up to 15
// MiB, on loopback only. It prints what it measured.
func TestStress(t *testing.T) {
	duration := 8 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("REGMIRROR_STRESS_DURATION")); err == nil {
		duration = d
	}
	runStress(t, stressOptions{duration: duration, images: 5, layers: 3, layerSize: 1 << 20, loops: 10}).check(t)
}
