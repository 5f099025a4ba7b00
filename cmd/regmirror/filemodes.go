package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
)

// readableByOthers are the permission bits that let users other than the
// daemon's read a file.
const readableByOthers fs.FileMode = 0o044

// protectFiles runs at startup, before the daemon writes anything. It makes
// every file and directory the process creates private to its user (the
// index's own files included, which its library creates world-readable
// unless the umask says otherwise), and warns about each secret file that
// other users may read. The data directory's own mode is the cache's
// business: cache.Open makes it private.
func protectFiles(cfg Config, log *slog.Logger) {
	restrictUmask()
	for _, f := range cfg.secretFiles() {
		warnIfReadable(f, log)
	}
}

// secretFile is a file that holds credentials, and the setting naming it.
type secretFile struct {
	setting, path string
}

// secretFiles lists the files of c that hold credentials: the config file
// itself (it may hold upstream passwords), the htpasswd file, password files
// and the TLS key.
func (c Config) secretFiles() []secretFile {
	candidates := []secretFile{
		{setting: "--config", path: c.path},
		{setting: "hosted.htpasswd", path: c.Hosted.Htpasswd},
		{setting: "tls_key", path: c.TLSKey},
	}
	for i, u := range c.Upstreams {
		candidates = append(candidates, secretFile{setting: fmt.Sprintf("upstreams[%d].password_file", i), path: u.PasswordFile})
	}
	for i, e := range c.Notifications.Endpoints {
		candidates = append(candidates,
			secretFile{setting: fmt.Sprintf("notifications.endpoints[%d].headers_file", i), path: e.HeadersFile},
			secretFile{setting: fmt.Sprintf("notifications.endpoints[%d].secret_file", i), path: e.SecretFile})
	}
	var files []secretFile
	for _, f := range candidates {
		if f.path != "" {
			files = append(files, f)
		}
	}
	return files
}

// warnIfReadable logs one line naming f, never its contents, when group or
// others may read it. A file that cannot be examined is left to the code
// that reads it, which fails with a clearer error.
func warnIfReadable(f secretFile, log *slog.Logger) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return
	}
	if perm := fi.Mode().Perm(); perm&readableByOthers != 0 {
		log.Warn("secret file is readable by other users; chmod 600 it", "setting", f.setting, "file", f.path,
			"mode", fmt.Sprintf("%04o", perm))
	}
}
