// Command goray runs goray clusters on this machine, as the `ray` command
// does for Ray:
//
//	goray start --head [--num-cpus N] ...   start a head node (a daemon)
//	goray status                            show nodes, resources and jobs
//	goray memory                            list objects and object store usage
//	goray list nodes|jobs|actors|...        the cluster's resources (Ray's state CLI)
//	goray get actor ID                      one of them, every field
//	goray stop                              stop the cluster
//
// A Go program joins the cluster with sdk.Init(ctx, sdk.Address("auto")),
// or by running with GORAY_ADDRESS set to the head's address.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/localcluster"
	"github.com/goray/goray/raylet"
	"github.com/goray/goray/sdk"
)

func main() {
	// Workers of a driver run the driver's binary, never this one; the
	// call keeps the convention that every goray binary starts with it.
	sdk.WorkerMain()
	log := newLogger()
	root := newRootCmd(log)
	if err := root.Execute(); err != nil {
		if errors.Is(err, errJobNotSucceeded) {
			os.Exit(1) // its status was said
		}
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		var fe flagError
		if errors.As(err, &fe) {
			fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", fe.cmd)
		}
		os.Exit(1)
	}
}

func newRootCmd(log zerolog.Logger) *cobra.Command {
	root := &cobra.Command{
		Use:   "goray",
		Short: "Start, inspect and stop goray clusters",
		Long: `goray runs a goray cluster on this machine.

  goray start --head    start a head node (NATS, GCS, raylet) in the background
  goray status          show nodes, resources, demands and jobs
  goray memory          list objects (owner, size, where, why alive) and store usage
  goray list KIND       nodes, jobs, actors, tasks, placement-groups, workers,
                        runtime-envs (--filter k=v, --limit N, --format table|json|yaml)
  goray get KIND ID     one node, job, actor, task or placement group, every field
  goray logs            a worker's, an actor's or a job's logs, from any node
  goray summary KIND    actors or tasks counted by class or function and state
  goray timeline        the tasks' spans as a Chrome trace (-o trace.json)
  goray job submit      run a program as a driver on the head (-- CMD ARGS);
                        goray job status|logs|stop|list|delete follow it
  goray stop            stop the cluster
  goray nats-creds      NATS credentials (read-only by default) for the nats CLI
  goray tls generate    certificates for mutual TLS

Programs join the cluster with sdk.Init(ctx, sdk.Address("auto")), or by
running with GORAY_ADDRESS=<address>.

Logs go to stderr; set GORAY_LOG_LEVEL (debug, info, warn, error) for more
or less of them (default warn).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return flagError{err: err, cmd: c.CommandPath()}
	})
	sec := &securityOptions{}
	sec.register(root.PersistentFlags())
	root.AddCommand(newStartCmd(log, sec), newStatusCmd(log, sec), newStopCmd(log, sec))
	root.AddCommand(newMemoryCmd(log, sec), newListCmd(log, sec), newGetCmd(log, sec), newLogsCmd(log, sec), newSummaryCmd(log, sec))
	root.AddCommand(newTimelineCmd(log, sec), newJobCmd(log, sec), newServeCmd(log, sec))
	root.AddCommand(newNATSCredsCmd(sec), newMetricsTokenCmd(sec), newDashboardKeyCmd(sec), newTLSCmd())
	return root
}

// flagError marks command-line mistakes, after which main points to --help.
type flagError struct {
	err error
	cmd string
}

func (e flagError) Error() string { return e.err.Error() }
func (e flagError) Unwrap() error { return e.err }

// newLogger logs to stderr at GORAY_LOG_LEVEL (default warn).
func newLogger() zerolog.Logger {
	w := zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}
	if !isTerminal(os.Stderr) {
		// A daemon's log file: full timestamps, no colours.
		w.NoColor, w.TimeFormat = true, time.DateTime
	}
	level := zerolog.WarnLevel
	v := os.Getenv(raylet.EnvLogLevel)
	l, err := zerolog.ParseLevel(strings.ToLower(v))
	ok := v != "" && err == nil && l != zerolog.NoLevel
	if ok {
		level = l
	}
	log := zerolog.New(w).Level(level).With().Timestamp().Logger()
	if v != "" && !ok {
		log.Warn().Msgf("%s=%q is not a log level (trace, debug, info, warn, error); using warn", raylet.EnvLogLevel, v)
	}
	return log
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// target is the cluster a command talks to, and where that came from.
type target struct {
	address string
	source  string // for messages: "--address", "GORAY_ADDRESS", or the file
	// record is set when the address came from (or matches) the
	// current-cluster file: the head process runs on this machine.
	record *localcluster.Record
	// creds authenticate to the cluster; credsErr says why there are
	// none (no token found), which a command reports if the cluster
	// refuses it.
	creds    *auth.Credentials
	credsErr error
}

// errNoCluster means no address was given and `goray start` recorded none.
var errNoCluster = errors.New("no goray cluster is running on this machine")

// resolveTarget picks the cluster: --address, else GORAY_ADDRESS, else the
// file `goray start --head` wrote. "auto" means the file.
func resolveTarget(flagAddr string, sec *securityOptions) (target, error) {
	t := target{address: flagAddr, source: "--address"}
	if t.address == "" {
		t.address, t.source = os.Getenv(sdk.EnvAddress), sdk.EnvAddress
	}
	rec, ok, err := localcluster.Read()
	if err != nil {
		return t, fmt.Errorf("read %s: %w", localcluster.AddressFile(), err)
	}
	if t.address == "" || t.address == "auto" {
		if !ok {
			return t, fmt.Errorf("%w (%s does not exist); start one with `goray start --head`, or name one with --address", errNoCluster, localcluster.AddressFile())
		}
		t.address, t.source = rec.Address, localcluster.AddressFile()
	}
	t.address = localcluster.NormalizeAddress(t.address)
	if ok && localcluster.NormalizeAddress(rec.Address) == t.address {
		t.record = &rec
	}
	// Without credentials a command can still tell a stale record from a
	// live cluster (which refuses it), so a missing token is reported
	// only when it matters.
	t.creds, t.credsErr = sec.client(t.address)
	if errors.Is(t.credsErr, auth.ErrBadToken) || errors.Is(t.credsErr, auth.ErrBadCredentials) {
		return t, t.credsErr
	}
	return t, nil
}

// dialCluster connects to the cluster's NATS and checks that its GCS
// answers. The connection does not reconnect: a CLI command wants an
// answer now, and must not log a warning when the cluster it is stopping
// goes away.
func dialCluster(ctx context.Context, addr string, creds *auth.Credentials, log zerolog.Logger) (*gcs.Client, *gcsInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	opts, err := creds.NATSOptions(auth.RoleAdmin)
	if err != nil {
		return nil, nil, err
	}
	c, err := gcs.Dial(ctx, addr, log, append(opts,
		nats.Name("goray-cli"),
		nats.NoReconnect(),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {}),
	)...)
	if err != nil {
		return nil, nil, err
	}
	info, err := c.ClusterInfo(ctx)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, info, nil
}

// clusterInfo finds the cluster a command names (see resolveTarget) and
// asks its GCS for the cluster's state.
func clusterInfo(ctx context.Context, address string, sec *securityOptions, log zerolog.Logger) (target, *gcsInfo, error) {
	t, err := resolveTarget(address, sec)
	if err != nil {
		return t, nil, err
	}
	c, info, err := dialCluster(ctx, t.address, t.creds, log)
	if err != nil && t.credsErr != nil && errors.Is(err, gcs.ErrUnauthorized) {
		return t, nil, t.credsErr
	}
	if err != nil {
		msg := fmt.Sprintf("no goray cluster answers at %s (from %s): %v", t.address, t.source, err)
		if t.record != nil && !t.record.Alive() {
			msg += "\nIts head process is gone; `goray stop` removes the stale record."
		}
		return t, nil, fmt.Errorf("%s", msg)
	}
	c.Close()
	return t, info, nil
}

// clusterAnswers reports whether a GCS answers at addr. A NATS that
// refuses creds is a cluster that runs there all the same.
func clusterAnswers(ctx context.Context, addr string, creds *auth.Credentials, log zerolog.Logger) bool {
	c, _, err := dialCluster(ctx, addr, creds, log)
	if err != nil {
		return errors.Is(err, gcs.ErrUnauthorized)
	}
	c.Close()
	return true
}
