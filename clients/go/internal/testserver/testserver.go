// Package testserver starts a real `elock serve` for the Go tests: on a free loopback port, with
// its own data directory, stopped when the test ends. The binary is $ELOCK_BIN, else the
// workspace's target/debug/elock (built by `cargo build -p elock`).
package testserver

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Binary is the elock binary the tests run.
func Binary(t testing.TB) string {
	if b := os.Getenv("ELOCK_BIN"); b != "" {
		return b
	}
	_, here, _, _ := runtime.Caller(0)
	b := filepath.Join(filepath.Dir(here), "..", "..", "..", "..", "target", "debug", "elock")
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("no elock binary at %s: build it (cargo build -p elock) or set ELOCK_BIN", b)
	}
	return b
}

// Start runs `elock serve` on the embedded store with extra arguments; its base URL.
func Start(t testing.TB, extra ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := append([]string{"serve", "--listen", addr, "--data-dir", t.TempDir()}, extra...)
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), "RUST_LOG=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting elock serve: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("elock serve on %s did not answer /healthz within 20s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Must fails the test on err.
func Must(t testing.TB, err error, what string, args ...interface{}) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
