package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/auth"
)

// newNATSCredsCmd gives an operator NATS credentials for the stock `nats`
// CLI: the nkey of a role, derived from the cluster's token.
func newNATSCredsCmd(sec *securityOptions) *cobra.Command {
	var (
		address  string
		out      string
		role     string
		readOnly bool
		name     string
	)
	cmd := &cobra.Command{
		Use:   "nats-creds [--read-only] [--out FILE]",
		Short: "Write NATS credentials for the nats CLI and print how to use them",
		Long: `Write the nkey seed of a NATS user of the cluster to a file (mode 0600)
and print the nats CLI context that uses it. The default, --read-only,
is the ops user: it may subscribe to every subject, read every bucket and
stream, and ask the GCS's list and get subjects, and publish nothing
else. --role admin gives what goray's CLI may do (stop the cluster
included). The seed is derived from the cluster's token, which this
command needs (it runs on the head's machine, or takes --auth-token-file);
the seed file is enough for the nats CLI, so hand that out, not the token.

docs/nats.md lists the buckets and subjects; docs/security.md the users.`,
		Example: `  goray nats-creds --read-only --out ~/goray-ops.nk
  nats context save goray-ops --server nats://127.0.0.1:6380 --nkey ~/goray-ops.nk
  nats --context goray-ops kv ls`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := auth.Role(role)
			if readOnly {
				r = auth.RoleOps
			}
			if r != auth.RoleOps && r != auth.RoleAdmin {
				return flagError{err: fmt.Errorf("invalid --role %q: want ops (read-only) or admin", role), cmd: cmd.CommandPath()}
			}
			t, tok, err := clusterToken(address, sec)
			if err != nil {
				return err
			}
			kp, err := tok.NATSKey(r)
			if err != nil {
				return err
			}
			seed, err := kp.Seed()
			if err != nil {
				return err
			}
			if out == "" {
				out = "goray-" + string(r) + ".nk"
			}
			if abs, err := filepath.Abs(out); err == nil {
				out = abs
			}
			if err := os.WriteFile(out, append(seed, '\n'), 0o600); err != nil {
				return fmt.Errorf("write the seed: %w", err)
			}
			if err := os.Chmod(out, 0o600); err != nil {
				return err
			}
			if name == "" {
				name = "goray-" + string(r)
			}
			ctxCmd := []string{"nats", "context", "save", name, "--server", t.address, "--nkey", out}
			if tl := t.creds.TLS(); tl != nil {
				ctxCmd = append(ctxCmd, "--tlscert", tl.Files.Cert, "--tlskey", tl.Files.Key, "--tlsca", tl.Files.CA)
			}
			what := "read-only (ops)"
			if r == auth.RoleAdmin {
				what = "admin"
			}
			fmt.Printf(`Wrote the %s NATS user's nkey seed to %s (mode 0600).
Save a nats CLI context with it:
    %s
then, for instance:
    nats --context %s kv ls
    nats --context %s sub 'goray.events.>'
`, what, out, strings.Join(ctxCmd, " "), name, name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	f.StringVar(&out, "out", "", "file to write the nkey seed to (default ./goray-ROLE.nk)")
	f.StringVar(&role, "role", string(auth.RoleOps), "the NATS user: ops (read-only) or admin")
	f.BoolVar(&readOnly, "read-only", false, "the read-only ops user (the default)")
	f.StringVar(&name, "context", "", "name of the nats CLI context to print (default goray-ROLE)")
	return cmd
}

// newMetricsTokenCmd prints the bearer token Prometheus sends to a metrics
// endpoint that listens beyond loopback.
func newMetricsTokenCmd(sec *securityOptions) *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "metrics-token",
		Short: "Print the bearer token for scraping the cluster's metrics endpoints",
		Long: `Print the bearer token a metrics endpoint listening beyond loopback
(goray start --metrics-host) requires: put it in a file for Prometheus's
authorization.credentials_file. It is derived from the cluster's token and
grants nothing but scraping. See docs/metrics.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, tok, err := clusterToken(address, sec)
			if err != nil {
				return err
			}
			fmt.Println(tok.MetricsBearer())
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	return cmd
}

func newDashboardKeyCmd(sec *securityOptions) *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "dashboard-key",
		Short: "Print the key scripts send to the dashboard's API",
		Long: `Print the key a script or a Grafana JSON data source sends to the
dashboard's API, as the header "Authorization: Bearer <key>". It is derived
from the cluster's token and opens the dashboard's API only. A browser logs
in with the cluster token instead. See docs/dashboard.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, tok, err := clusterToken(address, sec)
			if err != nil {
				return err
			}
			fmt.Println(tok.DashboardBearer())
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	return cmd
}

// clusterToken finds the cluster a command names and its token, from
// which the command derives what it prints.
func clusterToken(address string, sec *securityOptions) (target, auth.Token, error) {
	t, err := resolveTarget(address, sec)
	if err == nil {
		err = t.credsErr
	}
	if err != nil {
		return t, auth.Token{}, err
	}
	tok, ok := t.creds.Token()
	if !ok {
		return t, auth.Token{}, errors.New("the cluster runs without authentication (--auth none): there are no credentials to derive")
	}
	return t, tok, nil
}

// newTLSCmd makes certificates for a quick start with mutual TLS.
func newTLSCmd() *cobra.Command {
	tlsCmd := &cobra.Command{
		Use:   "tls",
		Short: "Make certificates for mutual TLS",
	}
	var (
		name  string
		hosts []string
	)
	gen := &cobra.Command{
		Use:   "generate DIR",
		Short: "Make a cluster CA (once) and a certificate it signs, in DIR",
		Long: `Make, in DIR, a cluster CA (ca.pem, ca-key.pem) unless DIR has one, and a
certificate NAME.pem with its key NAME-key.pem, signed by it, for the
hosts given (names and IP addresses the node is reached at; by default
localhost, 127.0.0.1, ::1, this machine's name and its addresses). The
certificate serves as both server and client certificate: every goray
process is both. Keys are mode 0600; keep ca-key.pem off the nodes.

Run it once per node (--name node2 --hosts 10.0.0.2), copy each node its
certificate, key and ca.pem, and start every process with --tls-cert,
--tls-key and --tls-ca (or GORAY_TLS_CERT, GORAY_TLS_KEY, GORAY_TLS_CA).`,
		Example: `  goray tls generate ./certs
  goray tls generate ./certs --name node2 --hosts 10.0.0.2,node2.lan
  goray start --head --tls-cert certs/node.pem --tls-key certs/node-key.pem --tls-ca certs/ca.pem`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(hosts) == 0 {
				hosts = localHosts()
			}
			g, err := auth.GenerateCert(args[0], name, hosts)
			if err != nil {
				return err
			}
			if g.CreatedCA {
				fmt.Printf("Made a cluster CA: %s (its key %s stays with you, mode 0600)\n", g.Files.CA, filepath.Join(args[0], auth.CAKeyFile))
			}
			fmt.Printf(`Made a certificate for %s:
    --tls-cert %s --tls-key %s --tls-ca %s
`, strings.Join(hosts, ", "), g.Files.Cert, g.Files.Key, g.Files.CA)
			return nil
		},
	}
	gen.Flags().StringVar(&name, "name", "node", "file name of the certificate (NAME.pem, NAME-key.pem)")
	gen.Flags().StringSliceVar(&hosts, "hosts", nil, "names and IP addresses the certificate is for (default: this machine's)")
	tlsCmd.AddCommand(gen)
	return tlsCmd
}

// localHosts are this machine's names and addresses.
func localHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	addrs, _ := netInterfaceAddrs()
	return append(hosts, addrs...)
}

func netInterfaceAddrs() ([]string, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	return out, nil
}
