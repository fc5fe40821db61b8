// Package testenv gives tests (and the example servers) real PostgreSQL and
// Redis servers: from environment variables, else on localhost, else in
// throwaway Docker containers when a Docker engine answers.
//
// Tests never use the admin connection for the code under test. Each test
// binary (one per package) gets its own database and two roles from
// [PostgreSQL]: an owner role that owns the database (it provisions and
// migrates) and an app role that is NOSUPERUSER, NOBYPASSRLS and owns nothing,
// so row level security really applies to it. [Main] drops them when the
// package's tests end.
//
// When a service is missing, tests are skipped with a message naming it —
// unless TENANCY_REQUIRE_SERVICES=1 (set by CI), where they fail.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
	"github.com/redis/rueidis"
)

// Environment variables read by this package.
const (
	// EnvPGAdminURL is a PostgreSQL URL of a role that may create databases
	// and roles (a superuser, say). Set, it is the only server tried.
	EnvPGAdminURL = "TENANCY_PG_ADMIN_URL"
	// EnvRedisAddr is a Redis host:port. Set, it is the only server tried.
	EnvRedisAddr = "TENANCY_REDIS_ADDR"
	// EnvRedisClusterAddrs is a comma-separated list of Redis Cluster nodes.
	// Unset, 127.0.0.1:7001 is tried (where .ci/run starts a cluster).
	EnvRedisClusterAddrs = "TENANCY_REDIS_CLUSTER_ADDRS"
	// EnvRequireServices set to "1" turns a missing service from a skip
	// into a test failure.
	EnvRequireServices = "TENANCY_REQUIRE_SERVICES"

	localPGURL     = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	localRedisAddr = "127.0.0.1:6379"
	probeTimeout   = 3 * time.Second
)

// ErrUnavailable is wrapped by the errors of [FindPostgreSQL] and [FindRedis]
// when no server could be found or started.
var ErrUnavailable = errors.New("service unavailable")

// Service is a server found or started by [FindPostgreSQL] or [FindRedis].
type Service struct {
	// Name is "PostgreSQL" or "Redis".
	Name string
	// URL is a PostgreSQL connection URL with admin rights, or a Redis
	// host:port.
	URL string
	// Source says where the server came from: the environment variable, "localhost" or "docker".
	Source string
	// Close removes the container of a "docker" service; for the others it does nothing.
	Close func()
}

// RequireServices reports whether TENANCY_REQUIRE_SERVICES=1.
func RequireServices() bool { return os.Getenv(EnvRequireServices) == "1" }

// FindPostgreSQL returns a PostgreSQL server with admin rights: the one named
// by TENANCY_PG_ADMIN_URL, else 127.0.0.1:5432 as user postgres, else a new
// container. The error names PostgreSQL and what was tried.
func FindPostgreSQL(ctx context.Context) (Service, error) {
	svc := Service{Name: "PostgreSQL", Close: func() {}}
	if url := os.Getenv(EnvPGAdminURL); url != "" {
		if err := pingPG(ctx, url); err != nil {
			return svc, fmt.Errorf("%w: PostgreSQL at %s=%s did not answer: %v", ErrUnavailable, EnvPGAdminURL, redact(url), err)
		}
		svc.URL, svc.Source = url, EnvPGAdminURL
		return svc, nil
	}
	localErr := pingPG(ctx, localPGURL)
	if localErr == nil {
		svc.URL, svc.Source = localPGURL, "localhost"
		return svc, nil
	}
	url, closeFn, dockerErr := startContainer(ctx, "postgres", "15-alpine", "5432/tcp",
		[]string{"POSTGRES_PASSWORD=tenancy", "POSTGRES_USER=postgres"},
		func(hostPort string) string {
			return "postgres://postgres:tenancy@" + hostPort + "/postgres?sslmode=disable"
		}, pingPG)
	if dockerErr != nil {
		return svc, fmt.Errorf("%w: PostgreSQL not found: set %s, or run PostgreSQL on 127.0.0.1:5432 with user postgres (%v), or a Docker engine (%v)",
			ErrUnavailable, EnvPGAdminURL, localErr, dockerErr)
	}
	svc.URL, svc.Source, svc.Close = url, "docker", closeFn
	return svc, nil
}

// FindRedis returns a Redis server: TENANCY_REDIS_ADDR, else 127.0.0.1:6379,
// else a new container. The error names Redis and what was tried.
func FindRedis(ctx context.Context) (Service, error) {
	svc := Service{Name: "Redis", Close: func() {}}
	if addr := os.Getenv(EnvRedisAddr); addr != "" {
		if err := pingRedis(ctx, addr); err != nil {
			return svc, fmt.Errorf("%w: Redis at %s=%s did not answer: %v", ErrUnavailable, EnvRedisAddr, addr, err)
		}
		svc.URL, svc.Source = addr, EnvRedisAddr
		return svc, nil
	}
	localErr := pingRedis(ctx, localRedisAddr)
	if localErr == nil {
		svc.URL, svc.Source = localRedisAddr, "localhost"
		return svc, nil
	}
	addr, closeFn, dockerErr := startContainer(ctx, "redis", "7-alpine", "6379/tcp", nil,
		func(hostPort string) string { return hostPort }, pingRedis)
	if dockerErr != nil {
		return svc, fmt.Errorf("%w: Redis not found: set %s, or run Redis on %s (%v), or a Docker engine (%v)",
			ErrUnavailable, EnvRedisAddr, localRedisAddr, localErr, dockerErr)
	}
	svc.URL, svc.Source, svc.Close = addr, "docker", closeFn
	return svc, nil
}

// FindRedisCluster returns the nodes of a Redis Cluster whose state is ok:
// TENANCY_REDIS_CLUSTER_ADDRS, else 127.0.0.1:7001. No container is started:
// a cluster needs more set-up than a test should hide.
func FindRedisCluster(ctx context.Context) ([]string, error) {
	addrs := []string{"127.0.0.1:7001"}
	source := "127.0.0.1:7001 (no " + EnvRedisClusterAddrs + ")"
	if v := os.Getenv(EnvRedisClusterAddrs); v != "" {
		addrs, source = strings.Split(v, ","), EnvRedisClusterAddrs+"="+v
	}
	if err := pingRedis(ctx, addrs[0]); err != nil {
		return nil, fmt.Errorf("%w: Redis Cluster at %s did not answer (bash .ci/run starts one): %v", ErrUnavailable, source, err)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		return nil, fmt.Errorf("%w: Redis Cluster at %s: %v", ErrUnavailable, source, err)
	}
	defer client.Close()
	info, err := client.Do(ctx, client.B().ClusterInfo().Build()).ToString()
	if err != nil || !strings.Contains(info, "cluster_state:ok") {
		return nil, fmt.Errorf("%w: Redis Cluster at %s is not ready (%v)", ErrUnavailable, source, err)
	}
	return addrs, nil
}

func pingPG(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

func pingRedis(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// A plain dial first: rueidis retries a refused connection for longer
	// than we want to wait for a server that is not there.
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	_ = c.Close()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ConnWriteTimeout: probeTimeout})
	if err != nil {
		return err
	}
	defer client.Close()
	return client.Do(ctx, client.B().Ping().Build()).Error()
}

// dockerPool is shared by every container this process starts.
var dockerPool = sync.OnceValues(func() (*dockertest.Pool, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if err := pool.Client.PingWithContext(ctx); err != nil {
		return nil, fmt.Errorf("no Docker engine answered: %w", err)
	}
	pool.MaxWait = 60 * time.Second
	return pool, nil
})

// startContainer runs repo:tag, waits until ping answers on the published
// port and returns the address built by addr. The image is pulled with a
// deadline, since dockertest alone would wait for a pull forever.
func startContainer(ctx context.Context, repo, tag, port string, env []string,
	addr func(hostPort string) string, ping func(context.Context, string) error) (string, func(), error) {
	pool, err := dockerPool()
	if err != nil {
		return "", nil, err
	}
	if _, err := pool.Client.InspectImage(repo + ":" + tag); err != nil {
		pullCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := pool.Client.PullImage(dc.PullImageOptions{Repository: repo, Tag: tag, Context: pullCtx}, dc.AuthConfiguration{})
		cancel()
		if err != nil {
			return "", nil, fmt.Errorf("pull %s:%s: %w", repo, tag, err)
		}
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{Repository: repo, Tag: tag, Env: env,
		Labels: map[string]string{"tenancykit.test": "1"}},
		func(hc *dc.HostConfig) { hc.AutoRemove = true; hc.RestartPolicy = dc.RestartPolicy{Name: "no"} })
	if err != nil {
		return "", nil, fmt.Errorf("run %s:%s: %w", repo, tag, err)
	}
	_ = res.Expire(30 * 60) // a crashed test process must not leave it running forever
	closeFn := func() { _ = pool.Purge(res) }
	url := addr(net.JoinHostPort("127.0.0.1", res.GetPort(port)))
	if err := pool.Retry(func() error { return ping(ctx, url) }); err != nil {
		closeFn()
		return "", nil, fmt.Errorf("%s:%s did not become ready: %w", repo, tag, err)
	}
	return url, closeFn, nil
}

// redact hides the password of a URL for messages.
func redact(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil || cfg.Password == "" {
		return url
	}
	return strings.Replace(url, cfg.Password, "xxxxx", 1)
}

// ExampleDatabase creates, once, a database named name for a runnable
// example, owned by the role <name>_owner, with the app role <name>_app
// (NOSUPERUSER, NOBYPASSRLS, owning nothing) allowed to connect, and returns
// their URLs. It is idempotent: a second run reuses them. name must be a
// plain lowercase identifier.
func ExampleDatabase(ctx context.Context, adminURL, name string) (ownerURL, appURL string, err error) {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", "", err
	}
	defer admin.Close(ctx)
	const password = "tenancy-example"
	owner, app := name+"_owner", name+"_app"
	for _, s := range []string{
		fmt.Sprintf("DO $$ BEGIN CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '%s'; EXCEPTION WHEN duplicate_object THEN NULL; END $$", pgx.Identifier{owner}.Sanitize(), password),
		fmt.Sprintf("DO $$ BEGIN CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT PASSWORD '%s'; EXCEPTION WHEN duplicate_object THEN NULL; END $$", pgx.Identifier{app}.Sanitize(), password),
	} {
		if _, err := admin.Exec(ctx, s); err != nil {
			return "", "", fmt.Errorf("set up roles: %w", err)
		}
	}
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", "", err
	}
	if !exists {
		for _, s := range []string{
			fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{owner}.Sanitize()),
			fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", pgx.Identifier{name}.Sanitize()),
			fmt.Sprintf("GRANT CONNECT, TEMPORARY ON DATABASE %s TO %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{app}.Sanitize()),
		} {
			if _, err := admin.Exec(ctx, s); err != nil {
				return "", "", fmt.Errorf("set up database: %w", err)
			}
		}
	}
	cc := admin.Config()
	url := func(role string) string {
		return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", role, password, cc.Host, cc.Port, name)
	}
	return url(owner), url(app), nil
}
