package main

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The forwarding probe: small blobs pulled cold one at a time, half
// through the replica that owns them, half through another one, which
// asks the owner for it.
const (
	probeBlobs    = 16
	probeBlobSize = 256 << 10
)

// spreadPull is one phase of the scaleout section: the clients pulling at
// once, spread over the replicas.
type spreadPull struct {
	crowd   crowd
	traffic upstreamTraffic
	hwm     []int64       // each replica's VmHWM during the phase
	cpu     time.Duration // all replicas' CPU time during the phase
}

// cpuPerGB is the replicas' CPU seconds per GB the clients received.
func (p spreadPull) cpuPerGB() float64 { return perGB(p.cpu, p.crowd.bytes) }

// getsPerBlob is the upstream's blob GETs per blob of img.
func (p spreadPull) getsPerBlob(img image) float64 {
	return float64(p.traffic.gets) / float64(len(img.blobs))
}

// pullSpread has the clients pull img at once, client i from replica i
// mod n, and reports each replica's peak memory and the upstream's blob
// GETs meanwhile.
func (b *bench) pullSpread(ctx context.Context, rs *replicas, img image) (spreadPull, error) {
	for _, d := range rs.daemons {
		if err := resetPeak(d.pid()); err != nil {
			return spreadPull{}, fmt.Errorf("resetting the peak RSS: %w", err)
		}
	}
	cpuBefore, err := rs.cpu()
	if err != nil {
		return spreadPull{}, err
	}
	b.up.Reset()
	urls := rs.urls()
	c, err := together(ctx, b.cfg.clients, func(ctx context.Context, i int) (pullResult, error) {
		return pullOnce(ctx, newPuller(urls[i%len(urls)], b.cfg.concurrency), img)
	})
	if err != nil {
		return spreadPull{}, fmt.Errorf("%d clients over %d replicas: %w\n%s", b.cfg.clients, len(urls), err, rs.logTails())
	}
	p := spreadPull{crowd: c, traffic: measureUpstream(b.up, img)}
	cpuAfter, err := rs.cpu()
	if err != nil {
		return p, err
	}
	p.cpu = cpuAfter - cpuBefore
	for _, d := range rs.daemons {
		m, err := readMemory(d.pid())
		if err != nil {
			return p, err
		}
		p.hwm = append(p.hwm, m.hwm)
	}
	return p, nil
}

// scaleoutRun is one set of replicas pulled cold, then warm, and, for a
// cluster, probed for the cost of a forwarded miss.
type scaleoutRun struct {
	replicas   int
	cold, warm spreadPull
	hop        hopLatency
	// forwardFailures is the replicas' count of forwards that fell back
	// to the upstream during the run.
	forwardFailures int
}

func (b *bench) scaleoutRun(ctx context.Context, n int, probes []ocispec.Descriptor) (scaleoutRun, error) {
	r := scaleoutRun{replicas: n}
	rs, err := b.startReplicas(ctx, n)
	if err != nil {
		return r, err
	}
	defer rs.remove()
	if r.cold, err = b.pullSpread(ctx, rs, b.big); err != nil {
		return r, fmt.Errorf("cold: %w", err)
	}
	if r.warm, err = b.pullSpread(ctx, rs, b.big); err != nil {
		return r, fmt.Errorf("warm: %w", err)
	}
	if rs.peers == nil {
		return r, nil
	}
	b.up.Reset()
	if r.hop, err = probeForwarding(ctx, rs, b.big.repo, probes); err != nil {
		return r, fmt.Errorf("forwarding probe: %w\n%s", err, rs.logTails())
	}
	r.hop.upstreamGets = b.up.BlobGetsTotal()
	if err := rs.checkOwners(ctx, r.hop.holders); err != nil {
		return r, err
	}
	r.forwardFailures, err = rs.forwardFailures(ctx)
	return r, err
}

// hopLatency is the time to the first byte of cold blobs pulled through
// the replica that owns them, and through another replica, which fetches
// them from the owner.
type hopLatency struct {
	owner, forwarded []time.Duration
	upstreamGets     int // blob GETs the probe cost the upstream
	// holders are, per probe blob, the replicas that should keep a copy:
	// the owner, and the replica it was pulled through.
	holders map[digest.Digest][]int
}

// probeForwarding pulls each probe blob once, one at a time: the even
// ones through their owner, the odd ones through the other replicas in
// turn.
func probeForwarding(ctx context.Context, rs *replicas, repo string, blobs []ocispec.Descriptor) (hopLatency, error) {
	l := hopLatency{holders: map[digest.Digest][]int{}}
	pullers := make([]*puller, len(rs.daemons))
	for i, d := range rs.daemons {
		pullers[i] = newPuller(d.url, 1)
		defer pullers[i].close()
	}
	n := len(rs.daemons)
	for i, blob := range blobs {
		owner, err := rs.ownerOf(blob.Digest)
		if err != nil {
			return l, err
		}
		via := owner
		if i%2 == 1 {
			via = (owner + 1 + i/2%(n-1)) % n
		}
		took, err := pullers[via].timeToFirstByte(ctx, repo, blob)
		if err != nil {
			return l, fmt.Errorf("through replica %d: %w", via+1, err)
		}
		if via == owner {
			l.owner = append(l.owner, took)
			l.holders[blob.Digest] = []int{owner}
		} else {
			l.forwarded = append(l.forwarded, took)
			l.holders[blob.Digest] = []int{min(owner, via), max(owner, via)}
		}
	}
	return l, nil
}

// putProbeBlobs stores the forwarding probe's blobs in the upstream, in
// every repository.
func (b *bench) putProbeBlobs() []ocispec.Descriptor {
	rng := mathrand.NewChaCha8([32]byte{'p', 'r', 'o', 'b', 'e'})
	var blobs []ocispec.Descriptor
	for range probeBlobs {
		data := make([]byte, probeBlobSize)
		rng.Read(data)
		d := b.up.PutBlob(data)
		blobs = append(blobs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: probeBlobSize})
	}
	return blobs
}

// scaleout compares one regmirror with a cluster of replicas on this
// machine: aggregate throughput, the upstream's blob GETs per blob, what
// a miss forwarded to the owner adds, and each replica's memory.
func (b *bench) scaleout(ctx context.Context) error {
	n := b.cfg.replicas
	if n < 2 {
		return errors.New("-replicas: a cluster needs at least 2")
	}
	b.printf("\n7. scale-out: one regmirror vs a cluster of %d (each a `regmirror serve` on loopback with its own data dir, a shared\n", n)
	b.printf("   secret, each other as cluster.peers; no shared storage); %d clients pull the %s image at once,\n", b.cfg.clients, b.big.describe())
	b.printf("   client i from replica i mod n, cold, then warm; MB/s = all clients' blob bytes / wall time; each set of replicas fresh\n")
	b.printf("   GETs/blob = the upstream's blob GETs / the image's blobs; peak RSS = each replica's VmHWM (reset before each phase)\n\n")
	probes := b.putProbeBlobs()
	var runs [][2]scaleoutRun
	b.scaleoutHeader()
	for i := range b.cfg.rounds {
		var pair [2]scaleoutRun
		for j, replicas := range []int{1, n} {
			r, err := b.scaleoutRun(ctx, replicas, probes)
			if err != nil {
				return fmt.Errorf("scaleout round %d, %d replicas: %w", i+1, replicas, err)
			}
			pair[j] = r
			b.scaleoutRow(strconv.Itoa(i+1), r)
		}
		runs = append(runs, pair)
	}
	b.scaleoutMedians(runs)
	b.hopReport(runs)
	b.scaleoutVerdicts(runs)
	return nil
}

func (b *bench) scaleoutHeader() {
	b.printf("   %-6s %8s %11s %11s %11s %11s %10s   %s\n", "round", "replicas", "cold", "CPU", "warm", "CPU",
		"GETs/blob", "peak RSS per replica, cold / warm")
}

func (b *bench) scaleoutRow(round string, r scaleoutRun) {
	var rss []string
	for i := range r.cold.hwm {
		rss = append(rss, fmt.Sprintf("%.1f / %.1f", mib(r.cold.hwm[i]), mib(r.warm.hwm[i])))
	}
	b.printf("   %-6s %8d %6.0f MB/s %6.2f s/GB %6.0f MB/s %6.2f s/GB %9.2fx   %s MiB\n", round, r.replicas,
		r.cold.crowd.mbps(), r.cold.cpuPerGB(), r.warm.crowd.mbps(), r.warm.cpuPerGB(), r.cold.getsPerBlob(b.big),
		strings.Join(rss, ", "))
}

// scaleoutMedians prints the median throughput and CPU per GB, cold and
// warm, of one replica and of the cluster, and how they compare.
func (b *bench) scaleoutMedians(runs [][2]scaleoutRun) {
	var mbps, cpu [2][2][]float64 // [setup][cold, warm]
	for _, pair := range runs {
		for j, r := range pair {
			for k, p := range []spreadPull{r.cold, r.warm} {
				mbps[j][k] = append(mbps[j][k], p.crowd.mbps())
				cpu[j][k] = append(cpu[j][k], p.cpuPerGB())
			}
		}
	}
	for j, r := range runs[0] {
		b.printf("   %-6s %8d %6.0f MB/s %6.2f s/GB %6.0f MB/s %6.2f s/GB\n", "median", r.replicas,
			median(mbps[j][0]), median(cpu[j][0]), median(mbps[j][1]), median(cpu[j][1]))
	}
	n := runs[0][1].replicas
	b.printf("\n   %d replicas vs 1, aggregate MB/s: cold %.2fx, warm %.2fx; replicas' CPU per GB served: cold %.2fx, warm %.2fx\n",
		n, median(mbps[1][0])/median(mbps[0][0]), median(mbps[1][1])/median(mbps[0][1]),
		median(cpu[1][0])/median(cpu[0][0]), median(cpu[1][1])/median(cpu[0][1]))
	b.printf("   (CPU = user+system time of all replicas during the phase, per GB the clients received). With no shared storage,\n")
	b.printf("   every replica a client pulls through fills a copy of its own: it hashes and writes each blob, and %d of %d blobs\n", n-1, n)
	b.printf("   also cross from their owner to it; so a cold pull through %d replicas does up to %d times the fill work of one.\n\n", n, n)
}

// hopReport prints what a miss forwarded to the owner adds to the time to
// the first byte.
func (b *bench) hopReport(runs [][2]scaleoutRun) {
	b.printf("   forwarded miss: time to the first byte of a cold %d KiB blob, pulled alone, through the replica that owns it\n", probeBlobSize>>10)
	b.printf("   (rendezvous hashing, internal/cluster's Owner) vs through another one, which fetches it from the owner;\n")
	b.printf("   %d blobs per round, half each way; median of each. Checked afterwards: each blob is kept by its owner and by\n", probeBlobs)
	b.printf("   the replica it was pulled through, no other, so the replicas picked the owner the bench did\n\n")
	b.printf("   %-6s %10s %10s %10s   %s\n", "round", "owner", "forwarded", "added", "upstream")
	var owner, forwarded []float64
	for i, pair := range runs {
		h := pair[1].hop
		o, f := millis(h.owner), millis(h.forwarded)
		owner, forwarded = append(owner, o...), append(forwarded, f...)
		b.printf("   %-6d %7.2f ms %7.2f ms %7.2f ms   %d blob GETs for %d blobs; forwards that fell back to it this round: %d\n", i+1,
			median(o), median(f), median(f)-median(o), h.upstreamGets, probeBlobs, pair[1].forwardFailures)
	}
	b.printf("   %-6s %7.2f ms %7.2f ms %7.2f ms   (all rounds' blobs)\n\n", "median",
		median(owner), median(forwarded), median(forwarded)-median(owner))
	b.printf("   on %d CPUs the %d replicas share the same cores as the upstream and the clients, so together they cannot be\n",
		runtime.NumCPU(), runs[0][1].replicas)
	b.printf("   faster than one; what matters here is 1.00x upstream GETs per blob and no slowdown beyond the forwarding hop\n\n")
}

func millis(ds []time.Duration) []float64 {
	var ms []float64
	for _, d := range ds {
		ms = append(ms, float64(d)/float64(time.Millisecond))
	}
	return ms
}

// scaleoutVerdicts judges what does not depend on timings: the upstream's
// GETs per blob and each replica's memory.
func (b *bench) scaleoutVerdicts(runs [][2]scaleoutRun) {
	once, failures := true, 0
	var worst float64
	var peak int64
	for _, pair := range runs {
		c := pair[1]
		once = once && c.cold.traffic.onceEach && c.warm.traffic.gets == 0 && c.hop.upstreamGets == probeBlobs
		worst = max(worst, c.cold.getsPerBlob(b.big))
		failures += c.forwardFailures
		peak = max(peak, slices.Max(c.cold.hwm), slices.Max(c.warm.hwm))
	}
	n := runs[0][1].replicas
	b.judge(verdict{
		name:   fmt.Sprintf("upstream blob GETs per blob, %d replicas", n),
		value:  fmt.Sprintf("%.2fx cold, worst round; %d fallbacks", worst, failures),
		target: "1.00x, each once",
		pass:   once && failures == 0,
	})
	b.judge(verdict{
		name:   fmt.Sprintf("peak RSS per replica, %d replicas", n),
		value:  fmt.Sprintf("%.1f MiB", mib(peak)),
		target: fmt.Sprintf("< %d MiB", rssTargetMiB),
		pass:   peak < rssTargetMiB<<20,
	})
}
