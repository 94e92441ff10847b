package tests

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// TestGCSMetrics: the head's metrics endpoint shows the cluster's actors,
// jobs and nodes by state, the GCS's requests by subject, and each
// worker's CPU and memory.
func TestGCSMetrics(t *testing.T) {
	ctx := startCluster(t, sdk.MetricsAddress("127.0.0.1:0"))
	alive, err := CounterActor.Remote(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := CounterActor.Remote(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []sdk.Actor[Counter]{alive, dead} {
		if _, err := CounterInc.Remote(ctx, a, 1).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := sdk.Kill(ctx, dead, true); err != nil {
		t.Fatal(err)
	}
	pid, err := CounterPid.Remote(ctx, alive).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The actor's worker process, from the raylet's /proc reading.
	if rss := scrapeSample(t, sdk.MetricsURL(), "goray_worker_memory_bytes", fmt.Sprintf(`pid="%d"`, pid)); rss < 1<<20 {
		t.Errorf("goray_worker_memory_bytes{pid=%d} = %v, want a process's resident memory", pid, rss)
	}
	if cpu := scrapeSample(t, sdk.MetricsURL(), "goray_worker_cpu_seconds_total", fmt.Sprintf(`pid="%d"`, pid)); cpu < 0 {
		t.Errorf("goray_worker_cpu_seconds_total{pid=%d} missing", pid)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		for _, want := range []struct {
			name, label string
			value       float64
		}{
			{"goray_actors", `state="ALIVE"`, 1},
			{"goray_actors", `state="DEAD"`, 1},
			{"goray_jobs", `state="RUNNING"`, 1},
			{"goray_nodes", `state="ALIVE"`, 1},
			{"goray_placement_groups", `state="CREATED"`, 0},
		} {
			if got := scrapeSample(t, sdk.MetricsURL(), want.name, want.label); got != want.value {
				return errorf("%s{%s} = %v, want %v", want.name, want.label, got, want.value)
			}
		}
		if n := scrapeSample(t, sdk.MetricsURL(), "goray_gcs_requests_total", `subject="goray.gcs.actor.register"`); n < 2 {
			return errorf("goray_gcs_requests_total{subject=goray.gcs.actor.register} = %v, want at least 2", n)
		}
		if n := scrapeSample(t, sdk.MetricsURL(), "goray_gcs_request_seconds_count", `subject="goray.gcs.actor.kill"`); n < 1 {
			return errorf("goray_gcs_request_seconds_count{subject=goray.gcs.actor.kill} = %v, want at least 1", n)
		}
		// The three actor calls, from this job's task events (the only
		// job of this embedded cluster).
		job := sdk.GetRuntimeContext(ctx).JobID.String()[:8]
		if n := scrapeSampleWith(t, sdk.MetricsURL(), "goray_tasks", `job_id="`+job+`"`, `state="FINISHED"`); n != 3 {
			return errorf("goray_tasks{job_id=%s,state=FINISHED} = %v, want 3", job, n)
		}
		// The embedded NATS server: the GCS's connection and the node's
		// (which this embedded driver shares); a stream per bucket and
		// store.
		if n := scrapeSample(t, sdk.MetricsURL(), "goray_nats_connections", ""); n < 2 {
			return errorf("goray_nats_connections = %v, want at least 2", n)
		}
		if n := scrapeSample(t, sdk.MetricsURL(), "goray_jetstream_streams", ""); n < 7 {
			return errorf("goray_jetstream_streams = %v, want at least 7", n)
		}
		return nil
	})

	// Every metric, the node's and the GCS's, names the cluster's session
	// (the head's session directory).
	for _, name := range []string{"goray_nodes", "goray_object_store_capacity_bytes", "go_goroutines"} {
		if v := scrapeSample(t, sdk.MetricsURL(), name, `session_name="`); v < 0 {
			t.Errorf("%s has no session_name label", name)
		}
	}

	// A request the GCS refuses: counted with its code.
	if _, err := sdk.GetActor[Counter](ctx, "no-such-actor", ""); err == nil {
		t.Fatal("GetActor of a name nobody has succeeded")
	}
	if n := scrapeSample(t, sdk.MetricsURL(), "goray_gcs_request_errors_total", `subject="goray.gcs.actor.get"`); n < 1 {
		t.Errorf("goray_gcs_request_errors_total{subject=goray.gcs.actor.get} = %v, want at least 1", n)
	}

	// The Grafana dashboard in docs/ charts only metrics that exist.
	dash, err := os.ReadFile("../docs/grafana/goray-cluster.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := metricsClient(t).Get(sdk.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`goray_[a-z_]+`).FindAllString(string(dash), -1)
	if len(names) < 10 {
		t.Fatalf("the dashboard names %d metrics", len(names))
	}
	for _, name := range names {
		if !strings.Contains(string(body), "\n"+name) {
			t.Errorf("the dashboard charts %s, which the head does not serve", name)
		}
	}
}

// scrapeSample is the value of the first sample of name whose labels
// include label ("": any sample of name), or -1 if there is none.
func scrapeSample(t *testing.T, url, name, label string) float64 {
	t.Helper()
	return scrapeSampleWith(t, url, name, label)
}

// scrapeSampleWith is scrapeSample with several labels, all of which the
// sample must have.
func scrapeSampleWith(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	resp, err := metricsClient(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		has := true
		for _, l := range labels {
			has = has && strings.Contains(line, l)
		}
		if (strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ")) && has {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("bad sample %q", line)
			}
			return v
		}
	}
	return -1
}
