package main

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// registerDaemonMetrics registers what the daemon reports about itself:
// which build it is, and the filesystem its cache lives on.
func registerDaemonMetrics(reg prometheus.Registerer, dataDir string) error {
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "regmirror_build_info",
		Help: "Always 1; the labels say which build of regmirror runs: its version, the Go release it was built with, and its source revision.",
		ConstLabels: prometheus.Labels{
			"version":   buildVersion(),
			"goversion": runtime.Version(),
			"revision":  buildRevision(),
		},
	})
	buildInfo.Set(1)
	collectors := []prometheus.Collector{buildInfo}
	// Where statfs is missing, no disk gauges: an alert on an absent series
	// is better than one on a made-up value.
	if _, err := freeBytes(dataDir); !errors.Is(err, errors.ErrUnsupported) {
		collectors = append(collectors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "regmirror_disk_free_bytes",
				Help: "Bytes an unprivileged user may still write on the filesystem of data_dir, measured at each scrape.",
			}, diskGauge(freeBytes, dataDir)),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "regmirror_disk_size_bytes",
				Help: "Size of the filesystem of data_dir.",
			}, diskGauge(diskSize, dataDir)))
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering daemon metrics: %w", err)
		}
	}
	return nil
}

// diskGauge reads a measure of dir's filesystem for a scrape; NaN when it
// cannot be read (the directory was removed), which Prometheus keeps as
// "no value" rather than as an empty disk.
func diskGauge(measure func(string) (int64, error), dir string) func() float64 {
	return func() float64 {
		n, err := measure(dir)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	}
}

// buildRevision is the commit the binary was built from, as the go command
// stamps it into builds from a git checkout; "unknown" otherwise.
func buildRevision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	revision, modified := "unknown", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && revision != "unknown" {
		revision += "-dirty"
	}
	return revision
}
