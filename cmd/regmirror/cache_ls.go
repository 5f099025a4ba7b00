package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/mirror"
)

// adminLsPath is `regmirror cache ls` on the admin socket.
const adminLsPath = "/v1/cache/ls"

// lsRequest is `regmirror cache ls [REPO]`.
type lsRequest struct {
	// Repo, when set, asks for the repository's tags instead of the list.
	Repo string `json:"repository,omitempty"`
}

// lsReport is what `regmirror cache ls` prints: every repository, or one
// repository's tags. Names are the ones clients pull and the catalog lists.
type lsReport struct {
	Repositories []mirror.Repository `json:"repositories,omitempty"`
	Repository   string              `json:"repository,omitempty"`
	Tags         []mirror.Tag        `json:"tags,omitempty"`
}

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list the cached and hosted repositories, or one repository's tags with their sizes and platforms",
		ArgsUsage: "[REPO]",
		Flags:     []cli.Flag{dataDirFlag(), configFlag(), jsonFlag()},
		Action:    cacheAction(runLs),
	}
}

func (d daemonAdmin) ls(ctx context.Context, req lsRequest) (r lsReport, err error) {
	return r, d.client.call(ctx, adminLsPath, req, &r, nil)
}

// ls lists the whole store, as the operator on the host may see it: no
// repository is hidden.
func (o *cacheOps) ls(ctx context.Context, req lsRequest) (lsReport, error) {
	snap, err := newStoreInventory(o.store, o.pins.Repos()).read(ctx)
	if err != nil {
		return lsReport{}, err
	}
	b := mirror.Browser{Content: o.store}
	if req.Repo == "" {
		return lsReport{Repositories: b.Repositories(snap, "")}, nil
	}
	tags, err := b.Tags(ctx, snap, req.Repo)
	if err != nil {
		return lsReport{}, fmt.Errorf("cache ls %s: %w", req.Repo, err)
	}
	return lsReport{Repository: tags.Name, Tags: tags.Tags}, nil
}

func runLs(c *cli.Context, admin cacheAdmin, out *output) error {
	if c.NArg() > 1 {
		return usageErrorf("cache ls takes at most one repository")
	}
	r, err := admin.ls(c.Context, lsRequest{Repo: c.Args().First()})
	if err != nil {
		return err
	}
	return out.report(r, func(w io.Writer) error { return writeLs(w, r) })
}

func writeLs(w io.Writer, r lsReport) error {
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
