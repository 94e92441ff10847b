package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/cluster"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/sdk"
)

// ship_binary_40MB_first_remote_task_s: what it takes to run a program no
// node has. A child process runs a head and a second node joins it; a
// fresh 40 MB binary (this one, padded with random bytes, so no node and
// no earlier run has it) is started as a driver, which joins the cluster
// and runs a no-op task pinned to the second node. The figure is from the
// driver's start of Init to the task's result: the binary's upload to
// goray_packages, the node's download and check, and the worker's start.
// first_remote_task_cached_binary_s is the same for a second driver of the
// same binary, which every node has cached by then. Medians of a few
// rounds, each with a binary of its own.

const (
	shipBinarySize = 40 << 20
	shipRounds     = 3
)

func benchShipBinary(ctx context.Context, h *harness) ([]result, error) {
	return runSelfChild(ctx, "ship child", "-ship-child", filepath.Join(h.cfg.sessions, "ship"))
}

// runShipChild is the head of the shipping benchmark.
func runShipChild(dir string) int { return childMain("ship child", dir, shipBinary) }

func shipBinary(ctx context.Context, dir string) ([]result, error) {
	creds, err := benchCredentials(true)
	if err != nil {
		return nil, err
	}
	head, nodeID, stop, err := startTwoNodes(ctx, dir, creds, 256<<20)
	if err != nil {
		return nil, err
	}
	defer stop()
	tokenFile := cluster.TokenFile(head.SessionDir())
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var first, cached []float64
	for i := range shipRounds {
		bin := filepath.Join(dir, fmt.Sprintf("driver-%d", i))
		if err := paddedCopy(exe, bin, shipBinarySize); err != nil {
			return nil, err
		}
		for _, out := range []*[]float64{&first, &cached} {
			s, err := runShipDriver(ctx, bin, head.Address(), tokenFile, nodeID.String())
			if err != nil {
				return nil, err
			}
			*out = append(*out, s)
		}
		log.Printf("ship: round %d: new 40 MB binary %.3f s, cached %.3f s", i, first[i], cached[i])
		_ = os.Remove(bin)
	}
	slices.Sort(first)
	slices.Sort(cached)
	return []result{
		{Name: "ship_binary_40MB_first_remote_task_s", Value: first[len(first)/2], Unit: "s"},
		{Name: "first_remote_task_cached_binary_s", Value: cached[len(cached)/2], Unit: "s"},
	}, nil
}

// paddedCopy copies src to dst with random bytes appended up to size
// (ELF loaders ignore what follows the segments).
func paddedCopy(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		_, err = io.CopyN(out, rand.Reader, max(size-n, 64))
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// runShipDriver runs bin as a driver and returns the seconds it reported.
func runShipDriver(ctx context.Context, bin, addr, tokenFile, nodeID string) (float64, error) {
	cmd := exec.CommandContext(ctx, bin, "-ship-driver", addr, nodeID)
	cmd.Env = append(os.Environ(), auth.EnvTokenFile+"="+tokenFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("ship driver: %w", err)
	}
	return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
}

// runShipDriverChild is the driver process: Init, then a task on node, timed.
func runShipDriverChild(addr, node string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := protos.UniqueIDFromHex(node)
	if err != nil {
		log.Printf("ship driver: %v", err)
		return 1
	}
	t0 := time.Now()
	if err := sdk.Init(ctx, sdk.Address(addr), sdk.LogWriter(os.Stderr)); err != nil {
		log.Printf("ship driver: %v", err)
		return 1
	}
	defer sdk.Shutdown()
	if _, err := noop.Options(sdk.Scheduling(sdk.NodeAffinity(sdk.NodeID(id), false))).Remote(ctx).Get(ctx); err != nil {
		log.Printf("ship driver: %v", err)
		return 1
	}
	fmt.Println(time.Since(t0).Seconds())
	return 0
}
