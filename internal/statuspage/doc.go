// Package statuspage serves the daemon's status page (/, /status.json)
// and browse page (/browse): static HTML with inline scripts and style
// that poll their JSON, and the report behind the status page. The report
// is built from typed snapshots, read through small interfaces: the
// cache's stats (admin.Ops), the upstreams' health (upstream.Monitor),
// and the mirror's traffic and recent requests (mirror.Mirror). Only the
// users of status.users see names of repositories, tags and digests.
package statuspage
