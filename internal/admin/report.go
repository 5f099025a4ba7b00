package admin

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
)

// The human-readable reports of the cache commands. Digests are printed in
// full: a report says exactly what went.

const timeLayout = "2006-01-02 15:04:05 MST"

// WriteStats prints r for people; source says where the numbers come from.
func WriteStats(w io.Writer, r StatsReport, source string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Cache (%s)\n", source)
	fmt.Fprintf(tw, "  Size\t%s\n", sizeAgainstBudget(r))
	fmt.Fprintf(tw, "  Content\t%s blobs (%s kept), %s manifests, %s tags\n",
		humanize.Comma(int64(r.Blobs)), humanize.Comma(int64(r.KeptBlobs)), humanize.Comma(int64(r.Manifests)), humanize.Comma(int64(r.Tags)))
	if !r.OldestAccess.IsZero() {
		fmt.Fprintf(tw, "  Last access\toldest %s, newest %s\n", when(r.OldestAccess), when(r.NewestAccess))
	}
	if t := r.Traffic; t != nil {
		fmt.Fprintf(tw, "  Since start\t%s: hit ratio %.1f%% (%s hits, %s misses)\n",
			when(t.Since), 100*t.HitRatio, humanize.Comma(t.Hits), humanize.Comma(t.Misses))
		fmt.Fprintf(tw, "  Served\t%s from the cache, %s from upstream\n",
			humanize.IBytes(uint64(t.CacheBytes)), humanize.IBytes(uint64(t.UpstreamBytes)))
	} else {
		fmt.Fprintf(tw, "  Since start\tno traffic figures: the daemon is not running\n")
	}
	if len(r.TopRepos) > 0 {
		fmt.Fprintf(tw, "\nTop repositories\tBYTES\tBLOBS\n")
		for _, u := range r.TopRepos {
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", u.Repo, humanize.IBytes(uint64(u.Bytes)), u.Blobs)
		}
	}
	return tw.Flush()
}

func sizeAgainstBudget(r StatsReport) string {
	total := r.Bytes + r.IndexBytes
	used := fmt.Sprintf("%s (blobs %s, manifests and tags %s)", humanize.IBytes(uint64(total)),
		humanize.IBytes(uint64(r.Bytes)), humanize.IBytes(uint64(r.IndexBytes)))
	if r.Budget <= 0 {
		return used + " (no budget: cache.max_size is not set)"
	}
	return fmt.Sprintf("%s of %s (%.1f%%; eviction above %.0f%%, down to %.0f%%)", used,
		humanize.IBytes(uint64(r.Budget)), 100*float64(total)/float64(r.Budget), 100*r.HighWatermark, 100*r.LowWatermark)
}

// when prints a time with how long ago it was, rounded for reading.
func when(t time.Time) string {
	return fmt.Sprintf("%s (%s)", t.Local().Format(timeLayout), humanize.Time(t))
}

// WritePrune prints what a prune removed, or would remove, digest by digest.
func WritePrune(w io.Writer, r PruneReport) error {
	verb := "Removed"
	if r.DryRun {
		verb = "Would remove"
	}
	fmt.Fprintf(w, "%s %d manifests and %d blobs, freeing %s", verb, len(r.Manifests), len(r.Blobs), humanize.IBytes(uint64(r.Bytes)))
	if r.Shared > 0 {
		fmt.Fprintf(w, " (%d shared blobs stay: manifests that remain use them)", r.Shared)
	}
	fmt.Fprintln(w)
	if len(r.Manifests)+len(r.Blobs) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "KIND\tDIGEST\tSIZE\tLAST ACCESS\tREPOSITORIES\n")
		for _, m := range r.Manifests {
			fmt.Fprintf(tw, "manifest\t%s\t-\t%s\t%s\n", m.Digest, m.LastAccess.Local().Format(timeLayout), strings.Join(m.Repos, ","))
		}
		for _, b := range r.Blobs {
			fmt.Fprintf(tw, "blob\t%s\t%s\t%s\t%s\n", b.Digest, humanize.IBytes(uint64(b.Size)), b.LastAccess.Local().Format(timeLayout), strings.Join(b.Repos, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "Skipped %d blobs in use or kept since the plan was made; they stay:\n", len(r.Skipped))
		for _, d := range r.Skipped {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	return nil
}

// WriteVerify prints what verify found and what became of each corrupt blob.
func WriteVerify(w io.Writer, r VerifyReport) error {
	fmt.Fprintf(w, "Checked %d blobs (%s): %d corrupt, %d removed\n",
		r.Checked, humanize.IBytes(uint64(r.Bytes)), len(r.Corrupt), len(r.Removed))
	removed := map[string]bool{}
	for _, d := range r.Removed {
		removed[d.String()] = true
	}
	for _, c := range r.Corrupt {
		fate := "removed: the next pull fetches it again"
		if !removed[c.Digest.String()] {
			fate = "not removed: in use or kept"
		}
		fmt.Fprintf(w, "  %s  %s (%s)\n", c.Digest, c.Reason, fate)
	}
	return nil
}

// WriteEvict prints an eviction pass.
func WriteEvict(w io.Writer, r EvictReport) error {
	_, err := fmt.Fprintf(w, "removed %d blobs and manifests, %s freed; usage was %s, target %s; pinned %s\n",
		r.Removed, bytesOf(r.Freed), bytesOf(r.Usage), bytesOf(r.Target), bytesOf(r.Pinned))
	if err == nil && r.PinsOver {
		_, err = fmt.Fprintln(w, "pinned content alone exceeds the target: only unpinned content was evicted")
	}
	return err
}

// bytesOf writes n in binary units, e.g. "50 GiB"; negative counts as 0.
func bytesOf(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
