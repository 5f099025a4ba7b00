package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
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
// listing each other as cluster.peers. Nothing is shared on disk.
type replicas struct {
	dir     string // the shared secret; the replicas' directories are under it
	daemons []*daemon
	// peers computes ownership as the replicas do; nil for one daemon,
	// which is not a cluster.
	peers *cluster.Peers
}

// startReplicas starts n replicas; n == 1 is a daemon without a cluster
// section, the baseline.
func (b *bench) startReplicas(ctx context.Context, n int) (*replicas, error) {
	dir, err := os.MkdirTemp(b.cfg.workDir, "regmirror-bench-cluster-")
	if err != nil {
		return nil, err
	}
	rs := &replicas{dir: dir}
	if err := rs.start(ctx, b.cfg.bin, b.up.URL(), n); err != nil {
		rs.remove()
		return nil, err
	}
	return rs, nil
}

func (rs *replicas) start(ctx context.Context, bin, upstreamURL string, n int) error {
	addrs := make([]string, n) // empty: the daemon picks a free port
	var clusterSection func(addr string) string
	if n > 1 {
		var err error
		if addrs, clusterSection, err = rs.planCluster(n); err != nil {
			return err
		}
	}
	for i, addr := range addrs {
		d, err := newDaemon(rs.dir)
		if err != nil {
			return err
		}
		d.addr = addr
		if clusterSection != nil {
			d.extraConfig = clusterSection(addr)
		}
		if err := d.start(ctx, bin, upstreamURL, upstreamUser, upstreamPassword); err != nil {
			os.RemoveAll(d.dir)
			return fmt.Errorf("replica %d of %d: %w", i+1, n, err)
		}
		rs.daemons = append(rs.daemons, d)
	}
	return nil
}

// planCluster picks n loopback addresses and writes the shared secret. It
// returns the addresses and the cluster section of the replica listening
// on each.
func (rs *replicas) planCluster(n int) (addrs []string, section func(addr string) string, err error) {
	var urls []string
	for range n {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, nil, err
		}
		addrs, urls = append(addrs, addr), append(urls, "http://"+addr)
	}
	if rs.peers, err = cluster.New(cluster.Config{Self: urls[0], URLs: urls}); err != nil {
		return nil, nil, fmt.Errorf("cluster members: %w", err)
	}
	secretFile := filepath.Join(rs.dir, "cluster-secret")
	if err := os.WriteFile(secretFile, []byte(rand.Text()+rand.Text()+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	return addrs, func(addr string) string {
		return fmt.Sprintf("cluster:\n  self: http://%s\n  peers: [%s]\n  secret_file: %s\n",
			addr, strings.Join(urls, ", "), secretFile)
	}, nil
}

// remove stops every replica and deletes their directories.
func (rs *replicas) remove() {
	for _, d := range rs.daemons {
		d.remove()
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

// logTails is the end of every replica's log, for error reports.
func (rs *replicas) logTails() string {
	var s strings.Builder
	for i, d := range rs.daemons {
		fmt.Fprintf(&s, "replica %d (%s) %s\n", i+1, d.url, d.logTail())
	}
	return s.String()
}

// forwardFailures sums every replica's count of forwards that fell back
// to the upstream.
func (rs *replicas) forwardFailures(ctx context.Context) (int, error) {
	total := 0
	for _, d := range rs.daemons {
		n, err := scrapeCounter(ctx, d.url+"/metrics", forwardFailuresMetric)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// scrapeCounter sums the samples of counter name in a Prometheus text
// exposition; a counter not exposed yet is 0.
func scrapeCounter(ctx context.Context, url, name string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("scraping %s: %q: %w", url, line, err)
		}
		total += v
	}
	return int(total), sc.Err()
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
