package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tenancykit/tenancy/internal/testenv"
)

// buildBinary builds the example as a user would, once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "saas")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBinaryServesAndStops runs the built server against the test
// databases: it answers, a second instance on the same address fails before
// printing its banner, and SIGINT stops the first cleanly (exit 0).
func TestBinaryServesAndStops(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	bin := buildBinary(t)
	addr := freeAddr(t)
	env := append(os.Environ(), "DATABASE_URL="+pg.OwnerURL, "APP_DATABASE_URL="+pg.AppURL,
		"REDIS_URL=redis://"+testenv.Redis(t)+"/0", "LISTEN_ADDR="+addr, "ADMIN_TOKEN=t")
	var out bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 300 {
			t.Fatalf("the server never became ready:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	second := exec.Command(bin)
	second.Env = env
	secondOut, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(secondOut), "LISTEN_ADDR") || strings.Contains(string(secondOut), "listening on") {
		t.Errorf("a second instance on the same address: %v\n%s", err, secondOut)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGINT:\n%s", out.String())
	}
}

// TestBinaryConfigErrors: half a database configuration, or an unreachable
// service, ends the program with a message that says what to set.
func TestBinaryConfigErrors(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	bin := buildBinary(t)
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"DATABASE_URL=" + pg.OwnerURL, "APP_DATABASE_URL="}, "APP_DATABASE_URL"},
		{[]string{"DATABASE_URL=", "APP_DATABASE_URL=" + pg.AppURL}, "DATABASE_URL"},
		{[]string{"DATABASE_URL=", "APP_DATABASE_URL=", "ADMIN_DATABASE_URL=postgres://postgres:pw-9f3kq@127.0.0.1:1/postgres"}, "ADMIN_DATABASE_URL"},
		{[]string{"DATABASE_URL=" + pg.OwnerURL, "APP_DATABASE_URL=" + pg.AppURL, "REDIS_URL=redis://127.0.0.1:1/0"}, "REDIS_URL"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(os.Environ(), append(c.env, "LISTEN_ADDR="+freeAddr(t))...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: %v, want a failure naming %s:\n%s", c.env, err, c.want, out)
		}
		if strings.Contains(string(out), "pw-9f3kq") {
			t.Errorf("%v: the password is in the message:\n%s", c.env, out)
		}
	}
}
