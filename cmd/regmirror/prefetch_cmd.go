package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/internal/admin"
)

func prefetchCommand() *cli.Command {
	return &cli.Command{
		Name:  "prefetch",
		Usage: "fetch images into the running daemon's cache before any client asks",
		Description: "Reads an image list (--file, one reference per line as Kubespray and air-gap tooling\n" +
			"print them; '#' starts a comment; tag patterns like registry.k8s.io/kube-apiserver:v1.31.*\n" +
			"are matched against the upstream's tags) and has the running daemon fetch every image\n" +
			"through its mirror. Without --file, fetches the configured prefetch.images now.\n" +
			"Exits non-zero when an image could not be fetched.",
		Flags: []cli.Flag{dataDirFlag(), configFlag(), jsonFlag(),
			&cli.StringFlag{Name: "file", Usage: "image list `FILE`, one reference per line; - reads standard input"},
		},
		Action: runPrefetchCommand,
	}
}

func runPrefetchCommand(c *cli.Context) error {
	cfg, err := configFromCLI(c)
	if err != nil {
		return err
	}
	var req prefetchRequest
	if file := c.String("file"); file != "" {
		if req.Images, err = readImageFile(c.App.Reader, file); err != nil {
			return usageErrorf("--file %s: %w", file, err)
		}
		if len(req.Images) == 0 {
			return usageErrorf("--file %s lists no images", file)
		}
	}
	bar := newProgressBar(c.App.ErrWriter)
	var r prefetchReport
	err = admin.NewClient(cfg.DataDir).Call(c.Context, admin.PrefetchPath, req, &r, bar.show)
	bar.done()
	if errors.Is(err, admin.ErrNoDaemon) {
		return fmt.Errorf("%w: %w", errPrefetchNeedsDaemon, err)
	}
	if err != nil {
		return err
	}
	out := &output{w: c.App.Writer, json: c.Bool("json")}
	if err := out.report(r, func(w io.Writer) error { return writePrefetch(w, r) }); err != nil {
		return err
	}
	if r.Failed > 0 {
		return fmt.Errorf("prefetch: %d of %d images could not be fetched", r.Failed, len(r.Images))
	}
	return nil
}

// readImageFile reads an image list from a file, or stdin for "-".
func readImageFile(stdin io.Reader, name string) ([]PrefetchImage, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	return readImageList(string(data))
}

func writePrefetch(w io.Writer, r prefetchReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tIMAGE\tTAGS\tBLOBS\tSIZE")
	for _, img := range r.Images {
		if img.Error != "" {
			fmt.Fprintf(tw, "failed\t%s\t%s\t\t\n", img.Image, img.Error)
			continue
		}
		fmt.Fprintf(tw, "ok\t%s\t%s\t%d\t%s\n", img.Image, strings.Join(img.Tags, " "), img.Blobs, Size(img.Bytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d images fetched, %d failed: %d blobs, %s\n", r.OK, r.Failed, r.Blobs, Size(r.Bytes))
	return err
}

// progressBar draws a run's progress on a terminal, in place; elsewhere
// (a pipe, a log file) it draws nothing.
type progressBar struct {
	w     io.Writer
	shown bool
}

func newProgressBar(w io.Writer) *progressBar {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return &progressBar{w: w}
		}
	}
	return &progressBar{}
}

// barWidth is the bar's length in characters.
const barWidth = 30

func (b *progressBar) show(p admin.Progress) {
	if b.w == nil || p.Total <= 0 {
		return
	}
	filled := barWidth * p.Done / p.Total
	fmt.Fprintf(b.w, "\r%s [%s%s] %d/%d images", p.Phase, strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), p.Done, p.Total)
	b.shown = true
}

func (b *progressBar) done() {
	if b.shown {
		fmt.Fprintln(b.w)
	}
}
