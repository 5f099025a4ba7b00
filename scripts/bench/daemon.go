package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// daemon is a `regmirror serve` process with its own fresh data directory,
// configured to mirror the benchmark upstream as docker.io with credentials,
// exactly as an operator would run it.
type daemon struct {
	cmd *exec.Cmd
	dir string // config, log and data live here
	url string
	// addr is where it listens; start picks a free loopback port when it
	// is empty. extraConfig is appended to its config file (a cluster:
	// section, say).
	addr, extraConfig string
	exit              chan error // receives cmd.Wait's result once
	// started is when the process was started, ready when it first
	// answered /v2/ with 200.
	started, ready time.Time
}

// startDaemon runs bin against upstreamURL and waits until it answers /v2/.
func startDaemon(ctx context.Context, bin, workDir, upstreamURL, user, password string) (*daemon, error) {
	d, err := newDaemon(workDir)
	if err != nil {
		return nil, err
	}
	if err := d.start(ctx, bin, upstreamURL, user, password); err != nil {
		os.RemoveAll(d.dir)
		return nil, err
	}
	return d, nil
}

// newDaemon makes a daemon's fresh directory; start runs it.
func newDaemon(workDir string) (*daemon, error) {
	dir, err := os.MkdirTemp(workDir, "regmirror-bench-")
	if err != nil {
		return nil, err
	}
	return &daemon{dir: dir, exit: make(chan error, 1)}, nil
}

func (d *daemon) start(ctx context.Context, bin, upstreamURL, user, password string) error {
	passwordFile := filepath.Join(d.dir, "upstream-password")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	config := filepath.Join(d.dir, "config.yaml")
	// Every client of the benchmark comes from 127.0.0.1, standing in for
	// as many hosts: no cap on the connections of one address.
	yaml := fmt.Sprintf("upstreams:\n  - host: docker.io\n    url: %s\n    username: %s\n    password_file: %s\n    expose: [\"library/*\"]\n"+
		"connections:\n  max_per_client: -1\n", upstreamURL, user, passwordFile)
	if err := os.WriteFile(config, []byte(yaml+d.extraConfig), 0o600); err != nil {
		return err
	}
	if d.addr == "" {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return err
		}
		d.addr = addr
	}
	logFile, err := os.Create(filepath.Join(d.dir, "regmirror.log"))
	if err != nil {
		return err
	}
	d.cmd = exec.Command(bin, "serve", "--listen", d.addr, "--data-dir", d.dataDir(), "--config", config)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+d.dir) // no ambient docker credentials
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		d.exit <- d.cmd.Wait()
		logFile.Close()
	}()
	d.url = "http://" + d.addr
	if err := d.waitReady(ctx); err != nil {
		d.stop()
		return fmt.Errorf("%w\n%s", err, d.logTail())
	}
	d.ready = time.Now()
	return nil
}

func (d *daemon) dataDir() string { return filepath.Join(d.dir, "data") }

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// waitReady polls /v2/ until the daemon answers or gives up.
func (d *daemon) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // a large cache may take a while
	defer cancel()
	// Often enough to time a startup to a few milliseconds.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/v2/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-d.exit:
			d.exit <- err
			return fmt.Errorf("regmirror exited before answering: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("regmirror did not answer %s/v2/: %w", d.url, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop shuts the daemon down gracefully (SIGINT), killing it if it lingers.
func (d *daemon) stop() error {
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-d.exit:
		d.exit <- err
		return err
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		return errors.New("regmirror did not stop within 15s of SIGINT; killed")
	}
}

// remove stops the daemon and deletes its data directory.
func (d *daemon) remove() {
	d.stop()
	os.RemoveAll(d.dir)
}

// logTail returns the end of the daemon's log, for error reports.
func (d *daemon) logTail() string {
	data, _ := os.ReadFile(filepath.Join(d.dir, "regmirror.log"))
	if len(data) > 4096 {
		data = data[len(data)-4096:]
	}
	return "regmirror log (tail):\n" + string(data)
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// memory is what /proc says about a process's resident set, in bytes.
type memory struct {
	rss, hwm int64 // VmRSS now, VmHWM (the kernel's peak since the last reset)
	// anon is RssAnon, the part of VmRSS that is the process's own memory:
	// the rest is files mapped into it (the index's tables), pages of the
	// page cache that the kernel takes back when it needs them.
	anon int64
}

func readMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch key {
		case "VmRSS":
			m.rss, err = parseKB(value)
		case "VmHWM":
			m.hwm, err = parseKB(value)
		case "RssAnon":
			m.anon, err = parseKB(value)
		}
		if err != nil {
			return m, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
	}
	return m, nil
}

func parseKB(s string) (int64, error) {
	kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "kB")), 10, 64)
	return kb << 10, err
}

// resetPeak makes the kernel restart VmHWM from the current RSS, so each
// phase reports its own peak (proc(5), clear_refs value 5).
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// sampler polls a process's VmRSS, keeping the largest value seen. The
// kernel's VmHWM catches peaks between samples; the samples show whether
// memory stays flat or grows with the bytes moved.
type sampler struct {
	stopped chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	maxRSS  int64
	maxAnon int64
	samples int
	err     error
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample(pid)
			select {
			case <-s.stopped:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample(pid int) {
	m, err := readMemory(pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = err
		return
	}
	s.samples++
	s.maxRSS = max(s.maxRSS, m.rss)
	s.maxAnon = max(s.maxAnon, m.anon)
}

// peakAnon is the largest RssAnon sampled so far.
func (s *sampler) peakAnon() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxAnon
}

// stop ends sampling and returns the largest VmRSS sampled.
func (s *sampler) stop() (maxRSS int64, samples int, err error) {
	close(s.stopped)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxRSS, s.samples, s.err
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// processCPU is the user plus system CPU time pid has used so far.
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may contain spaces; the fields after its
	// closing parenthesis start at field 3 (state). utime and stime are 14 and 15.
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:]))
	if i < 0 || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuMeter measures the CPU time the daemon and this process use between
// its start and stop.
type cpuMeter struct {
	daemonPID           int
	daemonStart, selfAt time.Duration
}

// startCPUMeter starts metering; daemonPID 0 meters this process only.
func startCPUMeter(daemonPID int) (cpuMeter, error) {
	m := cpuMeter{daemonPID: daemonPID}
	var err error
	if daemonPID != 0 {
		if m.daemonStart, err = processCPU(daemonPID); err != nil {
			return m, err
		}
	}
	m.selfAt, err = processCPU(os.Getpid())
	return m, err
}

func (m cpuMeter) stop() (daemon, self time.Duration, err error) {
	if m.daemonPID != 0 {
		if daemon, err = processCPU(m.daemonPID); err != nil {
			return 0, 0, err
		}
		daemon -= m.daemonStart
	}
	if self, err = processCPU(os.Getpid()); err != nil {
		return 0, 0, err
	}
	return daemon, self - m.selfAt, nil
}
