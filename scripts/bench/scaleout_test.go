package main

import (
	"bytes"
	"maps"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestSections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, list string
		want       []string
	}{
		{"default leaves scaleout out", "default", defaultSections},
		{"default and scaleout run in the report's order", "scaleout,default", allSections},
		{"one section", "scaleout", []string{"scaleout"}},
		{"named sections keep the report's order", "crowd, memory", []string{"memory", "crowd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := sections(tt.list)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("sections(%q) = %v, %v; want %v", tt.list, got, err, tt.want)
			}
		})
	}
	if _, err := sections("default,scale-out"); err == nil {
		t.Error("an unknown section was accepted")
	}
	if slices.Contains(defaultSections, "scaleout") {
		t.Error("scaleout is among the default sections; scripts/bench.sh asks for it by name")
	}
}

// The forward failures are read from a real Prometheus exposition: the
// samples of every label set are summed, and a counter with a longer name
// that starts with the same one is not counted.
func TestScrapeCounterSumsTheSamplesOfOneCounter(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bench_forward_failures_total"}, []string{"kind"})
	longer := prometheus.NewCounter(prometheus.CounterOpts{Name: "bench_forward_failures_total_other"})
	reg.MustRegister(failures, longer)
	failures.WithLabelValues("blob").Add(2)
	failures.WithLabelValues("manifest").Add(1)
	longer.Add(40)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	for name, want := range map[string]int{"bench_forward_failures_total": 3, "bench_not_exposed_total": 0} {
		got, err := scrapeCounter(t.Context(), srv.URL, name)
		if err != nil || got != want {
			t.Errorf("scrapeCounter(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
}

// The bucket's counters are read per label set from a real exposition:
// a labelled counter by its labels, an unlabelled one under "", a large
// value written in exponent form, and a longer name left out.
func TestMetricSamplesKeepsEachLabelSet(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "regmirror_bucket_reads_total"}, []string{"result"})
	claims := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "regmirror_bucket_fill_claims_total"}, []string{"result"})
	uploads := prometheus.NewCounter(prometheus.CounterOpts{Name: "regmirror_bucket_uploaded_blobs_total"})
	uploadedBytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "regmirror_bucket_uploaded_bytes_total"})
	longer := prometheus.NewCounter(prometheus.CounterOpts{Name: "regmirror_bucket_reads_total_other"})
	reg.MustRegister(reads, claims, uploads, uploadedBytes, longer)
	reads.WithLabelValues("hit").Add(4)
	reads.WithLabelValues("miss").Add(36)
	reads.WithLabelValues("error").Add(1)
	claims.WithLabelValues("taken").Add(9)
	claims.WithLabelValues("held").Add(2)
	uploads.Add(25)
	uploadedBytes.Add(3_221_225_472) // 3 GiB: exposed as 3.221225472e+09
	longer.Add(1000)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	body, err := fetchMetrics(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := metricSamples(bytes.NewReader(body), "regmirror_bucket_reads_total")
	want := map[string]float64{`result="hit"`: 4, `result="miss"`: 36, `result="error"`: 1}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("metricSamples(reads) = %v, %v; want %v", got, err, want)
	}

	counters := map[string]map[string]float64{}
	for _, name := range bucketTrafficMetrics {
		if counters[name], err = metricSamples(bytes.NewReader(body), name); err != nil {
			t.Fatal(err)
		}
	}
	var traffic bucketTraffic
	traffic.add(counters)
	traffic.add(counters) // a second replica with the same counts
	wantTraffic := bucketTraffic{hits: 8, misses: 72, errors: 2, leasesTaken: 18, leasesHeld: 4, uploads: 50,
		uploadedBytes: 6_442_450_944}
	if traffic != wantTraffic {
		t.Errorf("two replicas' bucket traffic = %+v, want %+v", traffic, wantTraffic)
	}
	if d := traffic.minus(wantTraffic); d != (bucketTraffic{}) {
		t.Errorf("traffic minus itself = %+v, want none", d)
	}
}

func TestMetricSamplesRejectsAMalformedSample(t *testing.T) {
	t.Parallel()
	for name, exposition := range map[string]string{
		"no closing brace": "m_total{result=\"hit\" 3\n",
		"no value":         "m_total{result=\"hit\"}\n",
		"not a number":     "m_total 3x\n",
	} {
		if got, err := metricSamples(strings.NewReader(exposition), "m_total"); err == nil {
			t.Errorf("%s: metricSamples(%q) = %v, want an error", name, exposition, got)
		}
	}
}

func TestScaleoutSetupsCompareOneDaemonWithAClusterWithoutAndWithABucket(t *testing.T) {
	t.Parallel()
	got := scaleoutSetups(3)
	want := []setup{
		{name: "1 daemon", replicas: 1},
		{name: "3 replicas", replicas: 3},
		{name: "3 + bucket", replicas: 3, bucket: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("scaleoutSetups(3) = %+v, want %+v", got, want)
	}
	for _, s := range got {
		if s.cluster() != (s.replicas > 1) {
			t.Errorf("%s: cluster() = %v", s.name, s.cluster())
		}
	}
}

func TestMediansOfTakesEachNumberOverTheRounds(t *testing.T) {
	t.Parallel()
	phase := func(mbps, cpuSeconds, s3Seconds float64) spreadPull {
		// 1 GB in one second is 1000 MB/s; CPU seconds per GB as given.
		wall := time.Duration(float64(time.Second) * 1000 / mbps)
		return spreadPull{
			crowd: crowd{bytes: 1e9, wall: wall},
			cpu:   time.Duration(cpuSeconds * float64(time.Second)),
			s3CPU: time.Duration(s3Seconds * float64(time.Second)),
		}
	}
	runs := []scaleoutRun{
		{cold: phase(500, 3, 2), warm: phase(1000, 0.3, 0)},
		{cold: phase(250, 1, 4), warm: phase(2000, 0.1, 0)},
		{cold: phase(400, 2, 3), warm: phase(500, 0.2, 0)},
	}
	got := mediansOf(runs)
	want := phaseMedians{coldMBps: 400, coldCPU: 2, coldS3CPU: 3, warmMBps: 1000, warmCPU: 0.2, warmS3CPU: 0}
	const eps = 1e-6
	for name, pair := range map[string][2]float64{
		"cold MB/s": {got.coldMBps, want.coldMBps}, "cold CPU": {got.coldCPU, want.coldCPU},
		"cold S3 CPU": {got.coldS3CPU, want.coldS3CPU}, "warm MB/s": {got.warmMBps, want.warmMBps},
		"warm CPU": {got.warmCPU, want.warmCPU}, "warm S3 CPU": {got.warmS3CPU, want.warmS3CPU},
	} {
		if math.Abs(pair[0]-pair[1]) > eps {
			t.Errorf("median %s = %v, want %v", name, pair[0], pair[1])
		}
	}
}

func TestFetchedOnce(t *testing.T) {
	t.Parallel()
	good := scaleoutRun{
		cold: spreadPull{traffic: upstreamTraffic{gets: 9, onceEach: true}},
		hop:  hopLatency{upstreamGets: probeBlobs},
	}
	tests := []struct {
		name   string
		change func(*scaleoutRun)
		want   bool
	}{
		{"each blob once cold, none warm, each probe once", func(*scaleoutRun) {}, true},
		{"a blob fetched twice cold", func(r *scaleoutRun) { r.cold.traffic.onceEach = false }, false},
		{"a blob fetched warm", func(r *scaleoutRun) { r.warm.traffic.gets = 1 }, false},
		{"a probe blob fetched twice", func(r *scaleoutRun) { r.hop.upstreamGets++ }, false},
		{"a forward fell back to the upstream", func(r *scaleoutRun) { r.forwardFailures = 1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := good
			tt.change(&r)
			if got := fetchedOnce(r, probeBlobs); got != tt.want {
				t.Errorf("fetchedOnce = %v, want %v", got, tt.want)
			}
		})
	}
}
