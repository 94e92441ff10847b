// Package dashboard serves goray's web dashboard from the head node: the
// cluster's nodes, jobs, actors, tasks, placement groups and objects, and
// charts of its main figures over the last hour, updated live in the
// browser (server-sent events), with nothing to install beside the head:
// the pages and their scripts are embedded in the binary, and the
// charts' history is kept in the head's memory, bounded.
//
// The same data is served as JSON under /api/ (docs/dashboard.md), for
// scripts and Grafana's JSON data source.
//
//	srv, err := dashboard.New(dashboard.Options{Addr: "127.0.0.1:8265",
//		Credentials: creds, State: src, Jobs: jobsClient, Logger: log})
//	if err == nil {
//		err = srv.Start()
//	}
//	fmt.Println("dashboard at", srv.URL())
//	defer srv.Shutdown()
//
// Everything but the login page and the static assets asks for
// authentication: a session cookie, given by logging in with the cluster
// token, or the header "Authorization: Bearer <key>" with the key `goray
// dashboard-key` prints (derived from the token, so a script's
// configuration never holds the token itself). With the cluster's TLS
// files the dashboard serves HTTPS with the node certificate.
//
// One poller reads the cluster for every open page, once a second and
// only while a page is open, so the head's cost does not grow with the
// number of browsers (pages ask for the topics they show); the history
// sampler runs always, every SampleInterval.
package dashboard
