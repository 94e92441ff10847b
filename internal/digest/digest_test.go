package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestFileAndVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	write := func(s string) string {
		if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	a := write("version a")
	if got, err := File(path); err != nil || got != a {
		t.Fatalf("File = %s, %v; want %s", got, err, a)
	}
	if err := Verify(path, a); err != nil {
		t.Fatal(err)
	}
	// Rewritten in place (same inode): the cache notices.
	later := time.Now().Add(time.Second)
	b := write("version b, longer")
	_ = os.Chtimes(path, later, later)
	if err := Verify(path, a); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify of the old digest after a rewrite: %v, want ErrMismatch", err)
	}
	if err := Verify(path, b); err != nil {
		t.Fatal(err)
	}
}

func TestFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := File(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO was hashed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("File blocked on a FIFO")
	}
	if _, err := File(dir); err == nil {
		t.Fatal("a directory was hashed")
	}
}
