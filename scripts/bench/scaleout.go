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

// setup is one way of running the scaleout section's replicas.
type setup struct {
	name     string
	replicas int
	// bucket: the replicas share a bucket (storage.s3) on a versitygw of
	// their own.
	bucket bool
}

// cluster reports whether the setup is a cluster rather than one daemon.
func (s setup) cluster() bool { return s.replicas > 1 }

// scaleoutSetups are what each round compares: one daemon, a cluster of n
// replicas that share nothing on disk, and the same sharing a bucket.
func scaleoutSetups(n int) []setup {
	return []setup{
		{name: "1 daemon", replicas: 1},
		{name: fmt.Sprintf("%d replicas", n), replicas: n},
		{name: fmt.Sprintf("%d + bucket", n), replicas: n, bucket: true},
	}
}

// spreadPull is one phase of the scaleout section: the clients pulling at
// once, spread over the replicas.
type spreadPull struct {
	crowd   crowd
	traffic upstreamTraffic
	hwm     []int64       // each replica's VmHWM during the phase
	cpu     time.Duration // all replicas' CPU time during the phase
	s3CPU   time.Duration // the S3 server's CPU time during the phase
	// bucket is what the replicas asked of the bucket during the phase.
	bucket bucketTraffic
}

// cpuPerGB is the replicas' CPU seconds per GB the clients received.
func (p spreadPull) cpuPerGB() float64 { return perGB(p.cpu, p.crowd.bytes) }

// s3CPUPerGB is the S3 server's CPU seconds per GB the clients received.
func (p spreadPull) s3CPUPerGB() float64 { return perGB(p.s3CPU, p.crowd.bytes) }

// getsPerBlob is the upstream's blob GETs per blob of img.
func (p spreadPull) getsPerBlob(img image) float64 {
	return float64(p.traffic.gets) / float64(len(img.blobs))
}

// pullSpread has the clients pull img at once, client i from replica i
// mod n, and reports each replica's peak memory, the replicas' and the S3
// server's CPU time, and the upstream's blob GETs and the bucket's
// requests meanwhile.
func (b *bench) pullSpread(ctx context.Context, rs *replicas, img image) (spreadPull, error) {
	for _, d := range rs.daemons {
		if err := resetPeak(d.pid()); err != nil {
			return spreadPull{}, fmt.Errorf("resetting the peak RSS: %w", err)
		}
	}
	before, err := rs.meter(ctx)
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
	// The uploads to the bucket end after the clients have their bytes;
	// they are part of the cold pull's cost, not the next phase's.
	if err := rs.waitUploads(ctx); err != nil {
		return p, err
	}
	after, err := rs.meter(ctx)
	if err != nil {
		return p, err
	}
	p.cpu, p.s3CPU, p.bucket = after.cpu-before.cpu, after.s3CPU-before.s3CPU, after.bucket.minus(before.bucket)
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
// cluster, probed for the cost of a forwarded miss; for a cluster sharing
// a bucket, a fresh replica then pulls through it.
type scaleoutRun struct {
	setup      setup
	cold, warm spreadPull
	hop        hopLatency
	// forwardFailures is the replicas' count of forwards that fell back
	// to the upstream during the run.
	forwardFailures int
	fresh           freshPull // with a bucket only
}

func (b *bench) scaleoutRun(ctx context.Context, s setup, probes []ocispec.Descriptor, s3bin string) (scaleoutRun, error) {
	r := scaleoutRun{setup: s}
	rs, err := b.startReplicas(ctx, s, s3bin)
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
	if r.forwardFailures, err = rs.forwardFailures(ctx); err != nil {
		return r, err
	}
	if rs.s3 != nil {
		if err := rs.waitUploads(ctx); err != nil {
			return r, err
		}
		if r.fresh, err = b.pullFresh(ctx, rs); err != nil {
			return r, fmt.Errorf("fresh replica: %w", err)
		}
	}
	return r, nil
}

// freshPull is one client pulling through a replica that joined a cluster
// sharing a bucket with an empty data dir, once the others had filled it.
type freshPull struct {
	pull pullResult
	// cpu is the fresh replica's CPU time during the pull, s3CPU the S3
	// server's.
	cpu, s3CPU time.Duration
	// blobGets and manifestGets are the upstream's during the pull.
	blobGets, manifestGets int
	// fallbacks are the forwards to an owner, by any replica, that went
	// to the upstream instead during the pull.
	fallbacks int
	bucket    bucketTraffic // the fresh replica's requests
	hwm       int64         // its VmHWM, from its start
}

// pullFresh starts one more replica on an empty data dir, sharing the
// bucket, and has one client pull the large image through it alone.
func (b *bench) pullFresh(ctx context.Context, rs *replicas) (freshPull, error) {
	d, err := rs.addReplica(ctx)
	if err != nil {
		return freshPull{}, err
	}
	defer d.remove()
	all := append(slices.Clone(rs.daemons), d)
	fallbacksBefore, err := forwardFailuresOf(ctx, all...)
	if err != nil {
		return freshPull{}, err
	}
	cpuBefore, err := processCPU(d.pid())
	if err != nil {
		return freshPull{}, err
	}
	s3Before, err := rs.s3CPU()
	if err != nil {
		return freshPull{}, err
	}
	b.up.Reset()
	var f freshPull
	if f.pull, err = pullOnce(ctx, newPuller(d.url, b.cfg.concurrency), b.big); err != nil {
		return f, fmt.Errorf("%w\n%s\n%s", err, d.logTail(), rs.logTails())
	}
	f.blobGets, f.manifestGets = b.up.BlobGetsTotal(), b.up.ManifestGetsTotal()
	cpuAfter, err := processCPU(d.pid())
	if err != nil {
		return f, err
	}
	s3After, err := rs.s3CPU()
	if err != nil {
		return f, err
	}
	f.cpu, f.s3CPU = cpuAfter-cpuBefore, s3After-s3Before
	fallbacksAfter, err := forwardFailuresOf(ctx, all...)
	if err != nil {
		return f, err
	}
	f.fallbacks = fallbacksAfter - fallbacksBefore
	if f.bucket, err = bucketTrafficOf(ctx, d); err != nil {
		return f, err
	}
	m, err := readMemory(d.pid())
	f.hwm = m.hwm
	return f, err
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
// machine, without and with a shared bucket: aggregate throughput, CPU
// per GB, the upstream's blob GETs per blob, what a miss forwarded to the
// owner adds, each replica's memory, and, with the bucket, a replica that
// joins with an empty disk.
func (b *bench) scaleout(ctx context.Context) error {
	n := b.cfg.replicas
	if n < 2 {
		return errors.New("-replicas: a cluster needs at least 2")
	}
	s3bin, err := findVersitygw(b.cfg.versitygw)
	if err != nil {
		return err
	}
	setups := scaleoutSetups(n)
	b.printf("\n7. scale-out: one regmirror vs a cluster of %d, without and with a shared bucket. Each replica is a `regmirror\n", n)
	b.printf("   serve` on loopback with its own data dir, a shared secret and each other as cluster.peers; %q also shares\n", setups[2].name)
	b.printf("   storage.s3: a fresh bucket per run on versitygw (posix backend in a temp dir of its own, on loopback; %s),\n", s3bin)
	b.printf("   in front of which each data dir is a local cache. %d clients pull the %s image at once,\n", b.cfg.clients, b.big.describe())
	b.printf("   client i from replica i mod n, cold, then warm; MB/s = all clients' blob bytes / wall time; each set of replicas\n")
	b.printf("   (and bucket) fresh. CPU = the replicas' user+system seconds per GB the clients received; S3 = versitygw's, on\n")
	b.printf("   top: part of the cost (the cold phase ends when the last upload to the bucket has, after the clients' last byte);\n")
	b.printf("   GETs/blob = the upstream's blob GETs / the image's blobs; peak RSS = each replica's VmHWM (reset before each phase)\n\n")
	probes := b.putProbeBlobs()
	var runs [][]scaleoutRun // [round][setup]
	b.scaleoutHeader()
	for i := range b.cfg.rounds {
		var round []scaleoutRun
		for _, s := range setups {
			r, err := b.scaleoutRun(ctx, s, probes, s3bin)
			if err != nil {
				return fmt.Errorf("scaleout round %d, %s: %w", i+1, s.name, err)
			}
			round = append(round, r)
			b.scaleoutRow(strconv.Itoa(i+1), r)
		}
		runs = append(runs, round)
	}
	b.scaleoutMedians(runs)
	b.bucketReport(runs)
	b.hopReport(runs)
	b.freshReport(runs)
	b.scaleoutVerdicts(runs)
	return nil
}

func (b *bench) scaleoutHeader() {
	b.printf("   %-6s %-11s %9s %9s %9s %9s %9s %9s %10s   %s\n", "round", "setup", "cold", "CPU", "S3",
		"warm", "CPU", "S3", "GETs/blob", "peak RSS per replica, cold / warm")
}

func (b *bench) scaleoutRow(round string, r scaleoutRun) {
	var rss []string
	for i := range r.cold.hwm {
		rss = append(rss, fmt.Sprintf("%.1f / %.1f", mib(r.cold.hwm[i]), mib(r.warm.hwm[i])))
	}
	s3 := func(p spreadPull) string { return s3Column(r.setup, p.s3CPUPerGB()) }
	b.printf("   %-6s %-11s %4.0f MB/s %4.2f s/GB %9s %4.0f MB/s %4.2f s/GB %9s %9.2fx   %s MiB\n", round, r.setup.name,
		r.cold.crowd.mbps(), r.cold.cpuPerGB(), s3(r.cold), r.warm.crowd.mbps(), r.warm.cpuPerGB(), s3(r.warm),
		r.cold.getsPerBlob(b.big), strings.Join(rss, ", "))
}

// s3Column is the S3 server's CPU per GB, or "-" for a setup without one.
func s3Column(s setup, perGB float64) string {
	if !s.bucket {
		return "-"
	}
	return fmt.Sprintf("%.2f s/GB", perGB)
}

// phaseMedians are the medians over the rounds of one setup's cold and
// warm phases.
type phaseMedians struct {
	coldMBps, coldCPU, coldS3CPU float64 // CPU in seconds per GB
	warmMBps, warmCPU, warmS3CPU float64
}

// mediansOf is the median of each number of runs, one setup's rounds.
func mediansOf(runs []scaleoutRun) phaseMedians {
	of := func(f func(scaleoutRun) float64) float64 {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	return phaseMedians{
		coldMBps:  of(func(r scaleoutRun) float64 { return r.cold.crowd.mbps() }),
		coldCPU:   of(func(r scaleoutRun) float64 { return r.cold.cpuPerGB() }),
		coldS3CPU: of(func(r scaleoutRun) float64 { return r.cold.s3CPUPerGB() }),
		warmMBps:  of(func(r scaleoutRun) float64 { return r.warm.crowd.mbps() }),
		warmCPU:   of(func(r scaleoutRun) float64 { return r.warm.cpuPerGB() }),
		warmS3CPU: of(func(r scaleoutRun) float64 { return r.warm.s3CPUPerGB() }),
	}
}

// ofSetup picks setup j's run of every round.
func ofSetup(runs [][]scaleoutRun, j int) []scaleoutRun {
	var picked []scaleoutRun
	for _, round := range runs {
		picked = append(picked, round[j])
	}
	return picked
}

// scaleoutMedians prints the median throughput and CPU per GB, cold and
// warm, of each setup, and how the clusters compare with one daemon.
func (b *bench) scaleoutMedians(runs [][]scaleoutRun) {
	var meds []phaseMedians
	for j, r := range runs[0] {
		m := mediansOf(ofSetup(runs, j))
		meds = append(meds, m)
		b.printf("   %-6s %-11s %4.0f MB/s %4.2f s/GB %9s %4.0f MB/s %4.2f s/GB %9s\n", "median", r.setup.name,
			m.coldMBps, m.coldCPU, s3Column(r.setup, m.coldS3CPU), m.warmMBps, m.warmCPU, s3Column(r.setup, m.warmS3CPU))
	}
	b.printf("\n")
	one := meds[0]
	for j, r := range runs[0][1:] {
		m := meds[j+1]
		b.printf("   %-11s vs 1 daemon, aggregate MB/s: cold %.2fx, warm %.2fx; CPU per GB served: cold %.2fx, warm %.2fx",
			r.setup.name, m.coldMBps/one.coldMBps, m.warmMBps/one.warmMBps, m.coldCPU/one.coldCPU, m.warmCPU/one.warmCPU)
		if r.setup.bucket {
			b.printf(";\n   %-11s with versitygw's CPU: cold %.2fx, warm %.2fx", "",
				(m.coldCPU+m.coldS3CPU)/one.coldCPU, (m.warmCPU+m.warmS3CPU)/one.warmCPU)
		}
		b.printf("\n")
	}
	n := runs[0][1].setup.replicas
	b.printf("   (CPU = user+system time of all replicas during the phase, per GB the clients received). With no shared storage,\n")
	b.printf("   every replica a client pulls through fills a copy of its own: it hashes and writes each blob, and %d of %d blobs\n", n-1, n)
	b.printf("   also cross from their owner to it; so a cold pull through %d replicas does up to %d times the fill work of one.\n", n, n)
	b.printf("   The bucket leaves that as it is (each data dir is still the cache that serves the warm pulls) and adds three\n")
	b.printf("   things to a cold pull: a HEAD per miss (has the bucket this blob for this repository? asked by every replica a\n")
	b.printf("   blob misses on, before it forwards to the owner or fetches), the fill lease (a conditional PUT in the bucket\n")
	b.printf("   before the owner's upstream GET, renewed every 10s, deleted after the upload), and the upload after each fill\n")
	b.printf("   by the download that took the lease (a HEAD, then the verified file read again and PUT, multipart when large),\n")
	b.printf("   and a link object per replica and repository: one more copy of the image written by versitygw, on the same\n")
	b.printf("   CPUs and disk. The replicas that kept a copy from the owner upload nothing (uploads per blob, below: 1.00).\n")
	b.printf("   What the bucket buys is at the end: a replica that joins, or lost its disk, fills from it, not the upstream.\n\n")
}

// bucketReport prints what the replicas sharing a bucket asked of it in
// each phase, from their own counters.
func (b *bench) bucketReport(runs [][]scaleoutRun) {
	j := slices.IndexFunc(runs[0], func(r scaleoutRun) bool { return r.setup.bucket })
	b.printf("   the bucket's requests by the %s replicas (their regmirror_bucket_* counters; a miss is one HEAD):\n", runs[0][j].setup.name)
	for i, r := range ofSetup(runs, j) {
		b.printf("   %-6d cold: %s: %.2f per blob\n", i+1, r.cold.bucket.describe(),
			float64(r.cold.bucket.uploads)/float64(len(b.big.blobs)))
		b.printf("   %-6s warm: %s\n", "", r.warm.bucket.describe())
	}
	b.printf("\n")
}

// hopReport prints what a miss forwarded to the owner adds to the time to
// the first byte, in each cluster.
func (b *bench) hopReport(runs [][]scaleoutRun) {
	b.printf("   forwarded miss: time to the first byte of a cold %d KiB blob, pulled alone, through the replica that owns it\n", probeBlobSize>>10)
	b.printf("   (rendezvous hashing, internal/cluster's Owner) vs through another one, which fetches it from the owner;\n")
	b.printf("   %d blobs per round, half each way; median of each. Checked afterwards: each blob is kept by its owner and by\n", probeBlobs)
	b.printf("   the replica it was pulled through, no other, so the replicas picked the owner the bench did. With the bucket,\n")
	b.printf("   both ways start with the HEAD of a miss and the owner takes the fill lease before its upstream GET; the upload\n")
	b.printf("   comes after the last byte, so it is not in these times\n\n")
	b.printf("   %-6s %-11s %10s %10s %10s   %s\n", "round", "setup", "owner", "forwarded", "added", "upstream")
	owner, forwarded := make([][]float64, len(runs[0])), make([][]float64, len(runs[0])) // [setup]
	for i, round := range runs {
		for j, r := range round {
			if !r.setup.cluster() {
				continue
			}
			h := r.hop
			o, f := millis(h.owner), millis(h.forwarded)
			owner[j], forwarded[j] = append(owner[j], o...), append(forwarded[j], f...)
			b.printf("   %-6d %-11s %7.2f ms %7.2f ms %7.2f ms   %d blob GETs for %d blobs; forwards that fell back to it: %d\n", i+1,
				r.setup.name, median(o), median(f), median(f)-median(o), h.upstreamGets, probeBlobs, r.forwardFailures)
		}
	}
	for j, r := range runs[0] {
		if r.setup.cluster() {
			b.printf("   %-6s %-11s %7.2f ms %7.2f ms %7.2f ms   (all rounds' blobs)\n", "median", r.setup.name,
				median(owner[j]), median(forwarded[j]), median(forwarded[j])-median(owner[j]))
		}
	}
	b.printf("\n")
}

// freshReport prints the pulls through a replica that joined the cluster
// sharing a bucket with an empty data dir.
func (b *bench) freshReport(runs [][]scaleoutRun) {
	j := slices.IndexFunc(runs[0], func(r scaleoutRun) bool { return r.setup.bucket })
	n := runs[0][j].setup.replicas
	b.printf("   fresh replica: after the probe, a replica %d with an empty data dir joins the %d sharing the bucket (its peers:\n", n+1, n)
	b.printf("   the %d and itself; the %d still list only themselves, as while a scale-up rolls out), and one client pulls the\n", n, n)
	b.printf("   image through it alone, %d blobs at a time. Its blobs should all come from the bucket: no upstream blob GET.\n", b.cfg.concurrency)
	b.printf("   It revalidates tags with their owner by its own view of the members, which may be itself, and reads manifests\n")
	b.printf("   from the bucket;\n")
	b.printf("   fallbacks = forwards to an owner, by any of the %d, that went to the upstream instead during the pull\n\n", n+1)
	b.printf("   %-6s %9s %9s %9s %10s %10s %10s   %s\n", "round", "MB/s", "CPU", "S3", "blob GETs", "mfst GETs", "fallbacks",
		"its bucket requests; peak RSS")
	var mbps []float64
	for i, r := range ofSetup(runs, j) {
		f := r.fresh
		mbps = append(mbps, f.pull.mbps())
		b.printf("   %-6d %4.0f MB/s %4.2f s/GB %4.2f s/GB %10d %10d %10d   %s; %.1f MiB\n", i+1, f.pull.mbps(),
			perGB(f.cpu, f.pull.bytes), perGB(f.s3CPU, f.pull.bytes), f.blobGets, f.manifestGets, f.fallbacks,
			f.bucket.describe(), mib(f.hwm))
	}
	b.printf("   %-6s %4.0f MB/s\n\n", "median", median(mbps))
	b.printf("   on %d CPUs the %d replicas (and versitygw) share the same cores as the upstream and the clients, so together they\n",
		runtime.NumCPU(), n)
	b.printf("   cannot be faster than one; what matters here is 1.00x upstream GETs per blob in both clusters and no slowdown\n")
	b.printf("   beyond the forwarding hop (with the bucket, its HEAD, lease and upload), and none at all for a fresh replica\n\n")
}

func millis(ds []time.Duration) []float64 {
	var ms []float64
	for _, d := range ds {
		ms = append(ms, float64(d)/float64(time.Millisecond))
	}
	return ms
}

// fetchedOnce reports whether a cluster's run cost the upstream one GET
// per blob: each of the image's blobs once cold, none warm, each probe
// blob once, and no forward fell back to the upstream.
func fetchedOnce(r scaleoutRun, probes int) bool {
	return r.cold.traffic.onceEach && r.warm.traffic.gets == 0 && r.hop.upstreamGets == probes && r.forwardFailures == 0
}

// scaleoutVerdicts judges what does not depend on timings: the upstream's
// GETs per blob and each replica's memory, for each cluster, and the
// upstream GETs of the fresh replica.
func (b *bench) scaleoutVerdicts(runs [][]scaleoutRun) {
	for j, r := range runs[0] {
		if !r.setup.cluster() {
			continue
		}
		once, failures := true, 0
		var worst float64
		var peak int64
		for _, c := range ofSetup(runs, j) {
			once = once && fetchedOnce(c, probeBlobs)
			worst = max(worst, c.cold.getsPerBlob(b.big))
			failures += c.forwardFailures
			peak = max(peak, slices.Max(c.cold.hwm), slices.Max(c.warm.hwm))
		}
		b.judge(verdict{
			name:   "upstream blob GETs per blob, " + r.setup.name,
			value:  fmt.Sprintf("%.2fx cold, worst round; %d fallbacks", worst, failures),
			target: "1.00x, each once",
			pass:   once,
		})
		b.judge(verdict{
			name:   "peak RSS per replica, " + r.setup.name,
			value:  fmt.Sprintf("%.1f MiB", mib(peak)),
			target: fmt.Sprintf("< %d MiB", rssTargetMiB),
			pass:   peak < rssTargetMiB<<20,
		})
	}
	j := slices.IndexFunc(runs[0], func(r scaleoutRun) bool { return r.setup.bucket })
	gets := 0
	for _, r := range ofSetup(runs, j) {
		gets = max(gets, r.fresh.blobGets)
	}
	b.judge(verdict{
		name:   "upstream blob GETs, fresh replica (bucket)",
		value:  fmt.Sprintf("%d, worst round", gets),
		target: "0",
		pass:   gets == 0,
	})
}
