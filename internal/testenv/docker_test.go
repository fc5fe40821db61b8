package testenv_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
)

// TestServicesRunInContainers proves the Docker path: with
// TENANCY_FORCE_DOCKER=1 (the second test pass of .ci/run) the PostgreSQL
// and Redis servers every test of this process uses are the containers
// testenv started — the data directory and port PostgreSQL reports are the
// container's, Redis is PID 1 of its own PID namespace on the container's
// port — and the examples' variables point at them. That no container is
// left afterwards is checked by .ci/run once the test binaries have exited.
func TestServicesRunInContainers(t *testing.T) {
	if !testenv.ForceDocker() {
		t.Skipf("runs in .ci/run's Docker pass (%s=1)", testenv.EnvForceDocker)
	}
	ctx := context.Background()
	inspect := func(svc testenv.Service) testenv.ContainerInfo {
		t.Helper()
		if svc.Source != "docker" || svc.Container == "" {
			t.Fatalf("%s came from %q, want a container", svc.Name, svc.Source)
		}
		c, err := testenv.InspectContainer(ctx, svc.Container)
		if err != nil {
			t.Fatal(err)
		}
		if !c.State.Running || c.Config.Labels[testenv.ContainerLabel] != "1" {
			t.Fatalf("%s container %s: running %v, labels %v", svc.Name, c.ID, c.State.Running, c.Config.Labels)
		}
		return c
	}
	envOf := func(c testenv.ContainerInfo, name string) string {
		for _, kv := range c.Config.Env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		return ""
	}
	// The container's port: the one its command names on the host network,
	// else the one published for 5432/6379.
	portOf := func(c testenv.ContainerInfo, inner string) string {
		if c.HostConfig.NetworkMode == "host" {
			for i, a := range c.Config.Cmd {
				if (a == "-p" || a == "--port") && i+1 < len(c.Config.Cmd) {
					return c.Config.Cmd[i+1]
				}
			}
			t.Fatalf("no port in %v", c.Config.Cmd)
		}
		b := c.NetworkSettings.Ports[inner+"/tcp"]
		if len(b) == 0 {
			t.Fatalf("nothing published for %s", inner)
		}
		return b[0].HostPort
	}

	pgSvc := testenv.PostgreSQLService(t)
	pgc := inspect(pgSvc)
	pg := testenv.PostgreSQL(t)
	conn, err := pgx.Connect(ctx, pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var port int
	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT inet_server_port(), current_setting('data_directory')").Scan(&port, &dataDir); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(pgSvc.URL)
	if want := envOf(pgc, "PGDATA"); want == "" || dataDir != want {
		t.Errorf("PostgreSQL's data directory is %q, the container's PGDATA %q", dataDir, want)
	}
	if want := portOf(pgc, "5432"); u.Port() != want || (pgc.HostConfig.NetworkMode == "host" && want != strconv.Itoa(port)) {
		t.Errorf("PostgreSQL answers on %d (URL port %s), the container's port is %s", port, u.Port(), want)
	}

	redisSvc := testenv.RedisService(t)
	rc := inspect(redisSvc)
	info, err := testenv.RedisClient(t).Do(ctx, testenv.RedisClient(t).B().Info().Section("server").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	_, redisPort, _ := net.SplitHostPort(redisSvc.URL)
	if fields["process_id"] != "1" {
		t.Errorf("Redis is PID %s, want 1 (the container's own PID namespace)", fields["process_id"])
	}
	if want := portOf(rc, "6379"); redisPort != want {
		t.Errorf("Redis at %s, the container's port is %s", redisSvc.URL, want)
	}
	if rc.HostConfig.NetworkMode == "host" && fields["tcp_port"] != redisPort {
		t.Errorf("Redis reports port %s, want %s", fields["tcp_port"], redisPort)
	}
	// Examples find servers by the variables a user sets.
	if got := os.Getenv("TENANCY_TEST_ADMIN_URL"); got != pgSvc.URL {
		t.Errorf("TENANCY_TEST_ADMIN_URL = %q, want the container's %q", got, pgSvc.URL)
	}
	if got := os.Getenv("REDIS_ADDR"); got != redisSvc.URL {
		t.Errorf("REDIS_ADDR = %q, want the container's %q", got, redisSvc.URL)
	}
	if !slices.Contains([]string{"host", "default", "bridge"}, pgc.HostConfig.NetworkMode) {
		t.Errorf("network mode %q", pgc.HostConfig.NetworkMode)
	}
}

// TestNoDockerClientInTheModule: the Docker path speaks the Engine API
// itself, so that no Docker client library (docker/docker, dockertest,
// logrus, …) reaches the go.sum of a program that imports the library.
func TestNoDockerClientInTheModule(t *testing.T) {
	for _, f := range []string{"../../go.mod", "../../go.sum"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, m := range []string{"github.com/docker/", "github.com/ory/dockertest", "github.com/moby/", "github.com/sirupsen/logrus"} {
				if strings.Contains(line, m) {
					t.Errorf("%s requires %q", f, strings.TrimSpace(line))
				}
			}
		}
	}
}
