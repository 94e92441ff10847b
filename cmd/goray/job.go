package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/jobs"
	"github.com/goray/goray/state"
)

// goray job: submit programs to the head's job server and follow them
// (package jobs).

func newJobCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	job := &cobra.Command{
		Use:   "job",
		Short: "Submit jobs to the cluster's job server and follow them",
		Long: `The head's job server runs a submitted command as a driver process on the
head, with GORAY_ADDRESS and the cluster's credentials set, and keeps its
status and output (readable after it ended, and after a restart of the
head).

  goray job submit --working-dir . -- ./mydriver -n 10
  goray job status goray_3f2a...
  goray job logs goray_3f2a... --follow
  goray job stop goray_3f2a...
  goray job list
  goray job delete goray_3f2a...`,
		Args: cobra.NoArgs,
	}
	job.AddCommand(newJobSubmitCmd(log, sec), newJobStatusCmd(log, sec), newJobLogsCmd(log, sec), newJobStopCmd(log, sec),
		newJobListCmd(log, sec), newJobDeleteCmd(log, sec))
	return job
}

// withJobs runs f with a client of the cluster's job server.
func withJobs(cmd *cobra.Command, o *stateOptions, sec *securityOptions, log zerolog.Logger, f func(ctx context.Context, c *jobs.Client) error) error {
	return withSource(cmd, o, sec, log, func(ctx context.Context, src stateapi.Source) error { return f(ctx, jobs.New(src.GCS)) })
}

func jobFlags(cmd *cobra.Command, o *stateOptions, timeout time.Duration) {
	f := cmd.Flags()
	f.StringVar(&o.address, "address", "", "cluster address (default: $GORAY_ADDRESS, then the cluster started on this machine)")
	f.DurationVar(&o.timeout, "timeout", timeout, "give up after this long (0: never)")
}

func newJobSubmitCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	var so jobs.SubmitOptions
	var env, meta []string
	var noWait bool
	var envFile string
	cmd := &cobra.Command{
		Use:   "submit [flags] -- COMMAND [ARGS...]",
		Short: "Run a command as a driver on the head; follow its output until it ends",
		Long: `Submit COMMAND to the head's job server, which runs it as a driver on the
head with GORAY_ADDRESS set. With --working-dir the directory is packed
(.git and --exclude patterns left out), stored in the cluster and
unpacked on the head: COMMAND runs there, and the job's workers get the
same files. Unless --no-wait, its output follows until it ends, and goray
exits non-zero if the job did not succeed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			so.Entrypoint = args
			var err error
			if so.Env, err = keyValues("--env", env); err != nil {
				return flagError{err: err, cmd: cmd.CommandPath()}
			}
			if so.Metadata, err = keyValues("--metadata", meta); err != nil {
				return flagError{err: err, cmd: cmd.CommandPath()}
			}
			if envFile != "" {
				if err := applyRuntimeEnvFile(envFile, &so); err != nil {
					return flagError{err: err, cmd: cmd.CommandPath()}
				}
			}
			return withJobs(cmd, o, sec, log, func(ctx context.Context, c *jobs.Client) error {
				j, err := c.Submit(ctx, so)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "Job %s submitted.\n", j.SubmissionID)
				if noWait {
					fmt.Println(j.SubmissionID)
					return nil
				}
				if err := c.FollowLogs(ctx, j.SubmissionID, os.Stdout); err != nil {
					return err
				}
				return finalStatus(ctx, c, j.SubmissionID)
			})
		},
	}
	jobFlags(cmd, o, 0)
	f := cmd.Flags()
	f.StringVar(&so.WorkingDir, "working-dir", "", "pack this directory and run the command in it on the head")
	f.StringArrayVar(&so.Excludes, "exclude", nil, "leave paths matching this pattern out of the working dir (.gitignore style; repeatable)")
	f.StringArrayVar(&env, "env", nil, "K=V added to the command's environment (repeatable; values are not recorded)")
	f.StringArrayVar(&meta, "metadata", nil, "k=v kept with the job's record (repeatable)")
	f.StringVar(&so.SubmissionID, "submission-id", "", "the job's id (default: goray_<random>)")
	f.StringVar(&envFile, "runtime-env", "", "a YAML file of working_dir, env_vars and excludes (flags given as well win)")
	f.BoolVar(&noWait, "no-wait", false, "print the id and return at once")
	return cmd
}

// runtimeEnvFile is --runtime-env's YAML, Ray's runtime_env subset that
// a submitted job uses.
type runtimeEnvFile struct {
	WorkingDir string            `json:"working_dir"`
	EnvVars    map[string]string `json:"env_vars"`
	Excludes   []string          `json:"excludes"`
}

// applyRuntimeEnvFile reads path into so, under what the flags set: a
// relative working_dir is the file's directory's.
func applyRuntimeEnvFile(path string, so *jobs.SubmitOptions) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--runtime-env: %w", err)
	}
	var f runtimeEnvFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return fmt.Errorf("--runtime-env %s: %w (fields: working_dir, env_vars, excludes)", path, err)
	}
	if so.WorkingDir == "" && f.WorkingDir != "" {
		so.WorkingDir = f.WorkingDir
		if !filepath.IsAbs(so.WorkingDir) {
			so.WorkingDir = filepath.Join(filepath.Dir(path), so.WorkingDir)
		}
	}
	so.Excludes = append(f.Excludes, so.Excludes...)
	for k, v := range f.EnvVars {
		if _, set := so.Env[k]; !set {
			if so.Env == nil {
				so.Env = map[string]string{}
			}
			so.Env[k] = v
		}
	}
	return nil
}

// finalStatus waits for the job's end, says how it ended, and fails
// unless it succeeded.
func finalStatus(ctx context.Context, c *jobs.Client, id string) error {
	j, err := c.Wait(ctx, id)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("Job %s %s", id, strings.ToLower(string(j.Status)))
	if j.ExitCode != nil {
		line += fmt.Sprintf(" (exit code %d)", *j.ExitCode)
	}
	if j.Message != "" {
		line += ": " + j.Message
	}
	fmt.Fprintln(os.Stderr, line+".")
	if j.Status != jobs.Succeeded {
		return errJobNotSucceeded
	}
	return nil
}

// errJobNotSucceeded makes goray exit 1 after the job's status was said.
var errJobNotSucceeded = errors.New("the job did not succeed")

func keyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

func newJobStatusCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a job's status (and every field with --format json|yaml)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withJobs(cmd, o, sec, log, func(ctx context.Context, c *jobs.Client) error {
				j, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				if o.format == state.FormatTable {
					line := string(j.Status)
					if j.ExitCode != nil {
						line += fmt.Sprintf(" (exit code %d)", *j.ExitCode)
					}
					if j.Message != "" {
						line += ": " + j.Message
					}
					fmt.Println(line)
					return nil
				}
				return printJobs(o.format, true, *j)
			})
		},
	}
	jobFlags(cmd, o, 30*time.Second)
	cmd.Flags().StringVar(&o.format, "format", state.FormatTable, "table (the status line), json or yaml")
	return cmd
}

func newJobLogsCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a job's output (kept after it ended)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow {
				o.timeout = 0
			}
			return withJobs(cmd, o, sec, log, func(ctx context.Context, c *jobs.Client) error {
				if follow {
					return c.FollowLogs(ctx, args[0], os.Stdout)
				}
				out, err := c.Logs(ctx, args[0])
				fmt.Print(out)
				return err
			})
		},
	}
	jobFlags(cmd, o, 30*time.Second)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the job ends")
	return cmd
}

func newJobStopCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	var noWait bool
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a job's driver (SIGTERM, then SIGKILL after 3 s) and wait for it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withJobs(cmd, o, sec, log, func(ctx context.Context, c *jobs.Client) error {
				stopped, err := c.Stop(ctx, args[0])
				if err != nil {
					return err
				}
				if !stopped {
					fmt.Fprintf(os.Stderr, "Job %s had already ended.\n", args[0])
					return nil
				}
				if noWait {
					return nil
				}
				j, err := c.Wait(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "Job %s %s.\n", args[0], strings.ToLower(string(j.Status)))
				return nil
			})
		},
	}
	jobFlags(cmd, o, 30*time.Second)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the driver is signalled")
	return cmd
}

func newJobListCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the submitted jobs, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withJobs(cmd, o, sec, log, func(ctx context.Context, c *jobs.Client) error {
				js, err := c.List(ctx)
				if err != nil {
					return err
				}
				return printJobs(o.format, false, js...)
			})
		},
	}
	jobFlags(cmd, o, 30*time.Second)
	cmd.Flags().StringVar(&o.format, "format", state.FormatTable, "table, json or yaml")
	return cmd
}

func newJobDeleteCmd(log zerolog.Logger, sec *securityOptions) *cobra.Command {
	o := &stateOptions{}
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Forget an ended job: its record and its output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withJobs(cmd, o, sec, log, func(ctx context.Context, c *jobs.Client) error {
				return c.Delete(ctx, args[0])
			})
		},
	}
	jobFlags(cmd, o, 30*time.Second)
	return cmd
}

// printJobs writes jobs as a table, or as json or yaml (one object when
// single).
func printJobs(format string, single bool, js ...jobs.Job) error {
	switch format {
	case state.FormatJSON, state.FormatYAML:
		var v any = js
		if single && len(js) == 1 {
			v = js[0]
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if format == state.FormatYAML {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		} else {
			b = append(b, '\n')
		}
		_, err = os.Stdout.Write(b)
		return err
	case state.FormatTable, "":
	default:
		return fmt.Errorf("format %q: want table, json or yaml", format)
	}
	if len(js) == 0 {
		fmt.Println("No jobs submitted.")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBMISSION_ID\tSTATUS\tEXIT\tSUBMITTED\tDURATION\tENTRYPOINT")
	for _, j := range js {
		exit, took := "-", "-"
		if j.ExitCode != nil {
			exit = fmt.Sprint(*j.ExitCode)
		}
		if !j.StartTime.IsZero() {
			end := j.EndTime
			if end.IsZero() {
				end = time.Now()
			}
			took = end.Sub(j.StartTime).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.SubmissionID, j.Status, exit, j.SubmitTime.Local().Format(time.DateTime), took, strings.Join(j.Entrypoint, " "))
	}
	return tw.Flush()
}
