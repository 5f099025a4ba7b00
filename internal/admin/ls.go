package admin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/regmirror/regmirror/mirror"
)

// LsPath is `regmirror cache ls` on the admin socket.
const LsPath = "/v1/cache/ls"

// LsRequest is `regmirror cache ls [REPO]`.
type LsRequest struct {
	// Repo, when set, asks for the repository's tags instead of the list.
	Repo string `json:"repository,omitempty"`
}

// LsReport is what `regmirror cache ls` prints: every repository, or one
// repository's tags. Names are the ones clients pull and the catalog lists.
type LsReport struct {
	Repositories []mirror.Repository `json:"repositories,omitempty"`
	Repository   string              `json:"repository,omitempty"`
	Tags         []mirror.Tag        `json:"tags,omitempty"`
}

// Ls lists the whole store, as the operator on the host may see it: no
// repository is hidden.
func (o *Ops) Ls(ctx context.Context, req LsRequest) (LsReport, error) {
	snap, err := NewInventory(o.store, o.pins.Repos()).read(ctx)
	if err != nil {
		return LsReport{}, err
	}
	b := mirror.Browser{Content: o.store}
	if req.Repo == "" {
		return LsReport{Repositories: b.Repositories(snap, "")}, nil
	}
	tags, err := b.Tags(ctx, snap, req.Repo)
	if err != nil {
		return LsReport{}, fmt.Errorf("cache ls %s: %w", req.Repo, err)
	}
	return LsReport{Repository: tags.Name, Tags: tags.Tags}, nil
}

// WriteLs prints r as a table: the repositories, or one repository's tags.
func WriteLs(w io.Writer, r LsReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.Repository == "" {
		fmt.Fprintf(tw, "REPOSITORY\tKIND\tTAGS\tMANIFESTS\tSIZE\tLAST PULLED\n")
		for _, repo := range r.Repositories {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", repo.Name, repoKind(repo), repo.Tags, repo.Manifests,
				humanize.IBytes(uint64(repo.Size)), ago(repo.LastPulled))
		}
		return tw.Flush()
	}
	fmt.Fprintf(tw, "TAG\tDIGEST\tSIZE\tPLATFORMS\tLAST PULLED\n")
	for _, t := range r.Tags {
		fmt.Fprintf(tw, "%s:%s\t%.19s\t%s\t%s\t%s\n", r.Repository, t.Name, t.Digest, humanize.IBytes(uint64(t.Size)),
			strings.Join(t.Platforms, ","), ago(t.LastPulled))
	}
	return tw.Flush()
}

// ago says how long ago t was; "-" for never.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return humanize.Time(t)
}

func repoKind(r mirror.Repository) string {
	var kinds []string
	if r.Hosted {
		kinds = append(kinds, "hosted")
	}
	if r.Cached {
		kinds = append(kinds, "cached")
	}
	if r.Pinned {
		kinds = append(kinds, "pinned")
	}
	return strings.Join(kinds, ",")
}
