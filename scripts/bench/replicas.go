package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
)

// forwardFailuresMetric counts the forwards to an owner that failed over
// to the upstream; a probe "through another replica" is only a forwarded
// miss if there were none.
const forwardFailuresMetric = "regmirror_cluster_forward_failures_total"

// replicas are one plain `regmirror serve`, or several forming a cluster:
// each with a data directory of its own, all sharing one secret and
// listing each other as cluster.peers, and, when s3 is set, sharing a
// bucket on it too.
type replicas struct {
	dir     string // the shared secret; the replicas' directories are under it
	daemons []*daemon
	// peers computes ownership as the replicas do; nil for one daemon,
	// which is not a cluster.
	peers *cluster.Peers
	// members are the cluster's URLs, secretFile the file of its shared
	// secret; both unset for one daemon.
	members    []string
	secretFile string
	// s3 serves the bucket the replicas share; nil when they share none.
	s3 *s3Server
	// storage is the replicas' storage section, empty without a bucket.
	storage          string
	bin, upstreamURL string
}

// startReplicas starts the replicas of setup s; one replica is a daemon
// without a cluster section, the baseline. A setup with a bucket first
// starts versitygw (s3bin) with a fresh bucket of its own.
func (b *bench) startReplicas(ctx context.Context, s setup, s3bin string) (*replicas, error) {
	dir, err := os.MkdirTemp(b.cfg.workDir, "regmirror-bench-cluster-")
	if err != nil {
		return nil, err
	}
	rs := &replicas{dir: dir, bin: b.cfg.bin, upstreamURL: b.up.URL()}
	if s.bucket {
		if rs.s3, err = startS3Server(ctx, s3bin, dir); err != nil {
			rs.remove()
			return nil, fmt.Errorf("the shared bucket: %w", err)
		}
		if rs.storage, err = rs.s3.storageSection(); err != nil {
			rs.remove()
			return nil, err
		}
	}
	if err := rs.start(ctx, s.replicas); err != nil {
		rs.remove()
		return nil, err
	}
	return rs, nil
}

func (rs *replicas) start(ctx context.Context, n int) error {
	addrs := make([]string, n) // empty: the daemon picks a free port
	if n > 1 {
		var err error
		if addrs, err = rs.planCluster(n); err != nil {
			return err
		}
	}
	for i, addr := range addrs {
		d, err := rs.startDaemon(ctx, addr, rs.members)
		if err != nil {
			return fmt.Errorf("replica %d of %d: %w", i+1, n, err)
		}
		rs.daemons = append(rs.daemons, d)
	}
	return nil
}

// startDaemon starts a daemon listening on addr; in a cluster, with peers
// as its members.
func (rs *replicas) startDaemon(ctx context.Context, addr string, peers []string) (*daemon, error) {
	d, err := newDaemon(rs.dir)
	if err != nil {
		return nil, err
	}
	d.addr = addr
	if rs.peers != nil {
		d.extraConfig = rs.clusterSection(addr, peers) + rs.storage
	}
	if err := d.start(ctx, rs.bin, rs.upstreamURL, upstreamUser, upstreamPassword); err != nil {
		os.RemoveAll(d.dir)
		return nil, err
	}
	return d, nil
}

// planCluster picks n loopback addresses, the cluster's members, and
// writes the shared secret.
func (rs *replicas) planCluster(n int) (addrs []string, err error) {
	for range n {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		addrs, rs.members = append(addrs, addr), append(rs.members, "http://"+addr)
	}
	if rs.peers, err = cluster.New(cluster.Config{Self: rs.members[0], URLs: rs.members}); err != nil {
		return nil, fmt.Errorf("cluster members: %w", err)
	}
	rs.secretFile = filepath.Join(rs.dir, "cluster-secret")
	if err := os.WriteFile(rs.secretFile, []byte(rand.Text()+rand.Text()+"\n"), 0o600); err != nil {
		return nil, err
	}
	return addrs, nil
}

// clusterSection is the cluster section of the replica listening on addr.
func (rs *replicas) clusterSection(addr string, peers []string) string {
	return fmt.Sprintf("cluster:\n  self: http://%s\n  peers: [%s]\n  secret_file: %s\n",
		addr, strings.Join(peers, ", "), rs.secretFile)
}

// addReplica starts one more replica of a cluster sharing a bucket, on an
// empty data dir: it lists the others and itself as its peers, while the
// others go on listing only themselves, as while a scale-up rolls out. It
// is not among rs.daemons; the caller removes it.
func (rs *replicas) addReplica(ctx context.Context) (*daemon, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	return rs.startDaemon(ctx, addr, append(slices.Clone(rs.members), "http://"+addr))
}

// remove stops every replica and the S3 server and deletes their
// directories.
func (rs *replicas) remove() {
	for _, d := range rs.daemons {
		d.remove()
	}
	if rs.s3 != nil {
		rs.s3.remove()
	}
	os.RemoveAll(rs.dir)
}

func (rs *replicas) urls() []string {
	var urls []string
	for _, d := range rs.daemons {
		urls = append(urls, d.url)
	}
	return urls
}

// ownerOf returns the number of the replica that owns d, by the
// rendezvous hashing the replicas themselves use.
func (rs *replicas) ownerOf(d digest.Digest) (int, error) {
	owner := rs.peers.Owner(d.String())
	i := slices.IndexFunc(rs.daemons, func(d *daemon) bool { return d.url == owner.URL })
	if i < 0 {
		return 0, fmt.Errorf("owner %s of %s is none of the replicas", owner, d)
	}
	return i, nil
}

// cpu is the CPU time all replicas have used so far.
func (rs *replicas) cpu() (time.Duration, error) {
	var total time.Duration
	for _, d := range rs.daemons {
		t, err := processCPU(d.pid())
		if err != nil {
			return 0, err
		}
		total += t
	}
	return total, nil
}

// s3CPU is the CPU time the S3 server has used so far; 0 without one.
func (rs *replicas) s3CPU() (time.Duration, error) {
	if rs.s3 == nil {
		return 0, nil
	}
	return processCPU(rs.s3.pid())
}

// downloadsInFlightMetric is the gauge of a replica's cache downloads
// that have not ended; a download ends after its copy to the bucket.
const downloadsInFlightMetric = "regmirror_cache_downloads_in_flight"

// waitUploads waits until no replica has a download in flight: each one
// has copied its blob to the bucket, and that costs nothing more. Without
// a bucket it returns at once.
func (rs *replicas) waitUploads(ctx context.Context) error {
	if rs.s3 == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		inFlight := 0
		for _, d := range rs.daemons {
			n, err := scrapeCounter(ctx, d.url+"/metrics", downloadsInFlightMetric)
			if err != nil {
				return err
			}
			inFlight += n
		}
		if inFlight == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the uploads to the bucket (%d downloads in flight): %w\n%s",
				inFlight, ctx.Err(), rs.logTails())
		case <-tick.C:
		}
	}
}

// meterReading is the replicas' and the S3 server's CPU time, and the
// replicas' requests to the bucket, so far.
type meterReading struct {
	cpu, s3CPU time.Duration
	bucket     bucketTraffic
}

func (rs *replicas) meter(ctx context.Context) (meterReading, error) {
	var m meterReading
	var err error
	if m.cpu, err = rs.cpu(); err != nil {
		return m, err
	}
	if rs.s3 == nil {
		return m, nil
	}
	if m.s3CPU, err = rs.s3CPU(); err != nil {
		return m, err
	}
	m.bucket, err = bucketTrafficOf(ctx, rs.daemons...)
	return m, err
}

// logTails is the end of every replica's log and the S3 server's, for
// error reports.
func (rs *replicas) logTails() string {
	var s strings.Builder
	for i, d := range rs.daemons {
		fmt.Fprintf(&s, "replica %d (%s) %s\n", i+1, d.url, d.logTail())
	}
	if rs.s3 != nil {
		s.WriteString(rs.s3.logTail())
	}
	return s.String()
}

// forwardFailures sums every replica's count of forwards that fell back
// to the upstream.
func (rs *replicas) forwardFailures(ctx context.Context) (int, error) {
	return forwardFailuresOf(ctx, rs.daemons...)
}

// forwardFailuresOf sums ds' counts of forwards that fell back to the
// upstream.
func forwardFailuresOf(ctx context.Context, ds ...*daemon) (int, error) {
	total := 0
	for _, d := range ds {
		n, err := scrapeCounter(ctx, d.url+"/metrics", forwardFailuresMetric)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// scrapeCounter sums the samples of counter (or gauge) name in the
// Prometheus text exposition at url; a counter not exposed yet is 0.
func scrapeCounter(ctx context.Context, url, name string) (int, error) {
	body, err := fetchMetrics(ctx, url)
	if err != nil {
		return 0, err
	}
	samples, err := metricSamples(bytes.NewReader(body), name)
	if err != nil {
		return 0, fmt.Errorf("scraping %s: %w", url, err)
	}
	var total float64
	for _, v := range samples {
		total += v
	}
	return int(total), nil
}

// fetchMetrics returns the Prometheus text exposition at url.
func fetchMetrics(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return body, nil
}

// metricSamples reads the samples of counter or gauge name from a
// Prometheus text exposition, keyed by their labels as written between the braces
// (`result="hit"`; "" for a sample without labels). A counter with a
// longer name that starts with name is not one of them.
func metricSamples(r io.Reader, name string) (map[string]float64, error) {
	samples := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		var labels string
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("%q: no closing brace", line)
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		samples[labels] += v
	}
	return samples, sc.Err()
}

// bucketTraffic is what replicas asked of the bucket they share, from
// their metrics (cache/bucket's).
type bucketTraffic struct {
	hits, misses, errors    int // blob reads: found, not there, failed
	leasesTaken, leasesHeld int // fill leases asked: taken, found held
	uploads                 int // blobs copied to the bucket after a fill
	uploadedBytes           int64
}

// bucketTrafficMetrics are the counters bucketTraffic reads.
var bucketTrafficMetrics = []string{"regmirror_bucket_reads_total", "regmirror_bucket_fill_claims_total",
	"regmirror_bucket_uploaded_blobs_total", "regmirror_bucket_uploaded_bytes_total"}

// add adds the samples of one replica's counters, keyed by metric name.
func (t *bucketTraffic) add(counters map[string]map[string]float64) {
	reads, claims := counters["regmirror_bucket_reads_total"], counters["regmirror_bucket_fill_claims_total"]
	t.hits += int(reads[`result="hit"`])
	t.misses += int(reads[`result="miss"`])
	t.errors += int(reads[`result="error"`] + claims[`result="error"`])
	t.leasesTaken += int(claims[`result="taken"`])
	t.leasesHeld += int(claims[`result="held"`])
	t.uploads += int(counters["regmirror_bucket_uploaded_blobs_total"][""])
	t.uploadedBytes += int64(counters["regmirror_bucket_uploaded_bytes_total"][""])
}

// minus is the traffic since an earlier reading.
func (t bucketTraffic) minus(earlier bucketTraffic) bucketTraffic {
	return bucketTraffic{
		hits: t.hits - earlier.hits, misses: t.misses - earlier.misses, errors: t.errors - earlier.errors,
		leasesTaken: t.leasesTaken - earlier.leasesTaken, leasesHeld: t.leasesHeld - earlier.leasesHeld,
		uploads: t.uploads - earlier.uploads, uploadedBytes: t.uploadedBytes - earlier.uploadedBytes,
	}
}

// describe says what the traffic was in one line.
func (t bucketTraffic) describe() string {
	s := fmt.Sprintf("blob reads %d hit / %d miss, fill leases %d taken / %d found held, %d blobs uploaded (%.0f MB)",
		t.hits, t.misses, t.leasesTaken, t.leasesHeld, t.uploads, float64(t.uploadedBytes)/1e6)
	if t.errors > 0 {
		s += fmt.Sprintf(", %d ERRORS", t.errors)
	}
	return s
}

// bucketTrafficOf sums what ds have asked of the bucket so far.
func bucketTrafficOf(ctx context.Context, ds ...*daemon) (bucketTraffic, error) {
	var t bucketTraffic
	for _, d := range ds {
		url := d.url + "/metrics"
		body, err := fetchMetrics(ctx, url)
		if err != nil {
			return t, err
		}
		counters := map[string]map[string]float64{}
		for _, name := range bucketTrafficMetrics {
			if counters[name], err = metricSamples(bytes.NewReader(body), name); err != nil {
				return t, fmt.Errorf("scraping %s: %w", url, err)
			}
		}
		t.add(counters)
	}
	return t, nil
}

// checkOwners makes sure the replicas agree with the bench about who owns
// each probe blob: a blob pulled through its owner is kept by it alone, one
// pulled through another replica by both. A disagreement would make the
// latencies measure something else. The copies are renamed into place just
// after the client has the last byte, so it waits a little for them.
func (rs *replicas) checkOwners(ctx context.Context, holders map[digest.Digest][]int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d, have, want := rs.firstMisplaced(holders)
		if have == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("blob %s is kept by replicas %v, want %v: the replicas do not pick the owner the bench does",
				d, have, want)
		case <-tick.C:
		}
	}
}

// firstMisplaced returns a blob whose copies are not where holders says,
// with the replicas that keep it (numbered from 1); have is nil when every
// blob is where it should be.
func (rs *replicas) firstMisplaced(holders map[digest.Digest][]int) (d digest.Digest, have, want []int) {
	for d, want := range holders {
		have := []int{}
		for i, r := range rs.daemons {
			if r.holds(d) {
				have = append(have, i)
			}
		}
		if !slices.Equal(have, want) {
			return d, plusOne(have), plusOne(want)
		}
	}
	return "", nil, nil
}

func plusOne(xs []int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = x + 1
	}
	return out
}

// holds reports whether the daemon's cache has a file for blob dg.
func (d *daemon) holds(dg digest.Digest) bool {
	p, ok := blobFilePath("/blobs/" + dg.String())
	if !ok {
		return false
	}
	_, err := os.Stat(filepath.Join(d.dataDir(), "blobs", p))
	return err == nil
}
