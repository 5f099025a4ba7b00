package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/internal/admin"
)

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list the cached and hosted repositories, or one repository's tags with their sizes and platforms",
		ArgsUsage: "[REPO]",
		Flags:     []cli.Flag{dataDirFlag(), configFlag(), jsonFlag()},
		Action:    cacheAction(runLs),
	}
}

func runLs(c *cli.Context, ops cacheAdmin, out *output) error {
	if c.NArg() > 1 {
		return usageErrorf("cache ls takes at most one repository")
	}
	r, err := ops.Ls(c.Context, admin.LsRequest{Repo: c.Args().First()})
	if err != nil {
		return err
	}
	return out.report(r, func(w io.Writer) error { return admin.WriteLs(w, r) })
}
