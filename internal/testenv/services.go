// Package testenv gives tests (and the example servers) real PostgreSQL and
// Redis servers: from environment variables, else on localhost, else in
// throwaway Docker containers when a Docker engine answers.
//
// # Docker
//
// On a normal Docker engine nothing needs setting: the official images
// (postgres:15-alpine, redis:7-alpine) are pulled if absent and run on the
// default bridge network with their port published on 127.0.0.1. The
// containers carry the label tenancykit.test=1 and are removed when the
// package's tests end, also after a failure or an interrupt (SIGINT,
// SIGTERM); `docker rm -f $(docker ps -aq --filter label=tenancykit.test=1)`
// removes what a killed test binary left. Settings, by environment:
//
//   - TENANCY_FORCE_DOCKER=1 skips the environment URLs and localhost and
//     always starts containers (CI runs the isolation suite this way).
//   - TENANCY_DOCKER_PG_IMAGE, TENANCY_DOCKER_REDIS_IMAGE name other images
//     with the official images' contract (POSTGRES_PASSWORD/POSTGRES_USER,
//     a "postgres" or "redis-server" command with arguments).
//   - TENANCY_DOCKER_NETWORK=host runs the containers on the host's network,
//     each server on a free loopback port that testenv picks and passes as
//     its command's arguments (for an engine without a bridge, as in CI).
//
// DOCKER_HOST selects the engine, as for the docker CLI: a unix socket (the
// default, /var/run/docker.sock) or tcp:// without TLS. testenv speaks the
// Engine API itself (engine.go), so the module requires no Docker client
// library and none reaches its users' go.sum.
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
	"github.com/redis/rueidis"
)

// Environment variables read by this package.
const (
	// EnvPGAdminURL is a PostgreSQL URL of a role that may create databases
	// and roles (a superuser, say). Set, it is the only server tried.
	EnvPGAdminURL = "TENANCY_PG_ADMIN_URL"
	// EnvPG2AdminURL is the admin URL of a second PostgreSQL server (another
	// cluster), for silo placements on a server of their own. Set, it is
	// the only server tried; unset, 127.0.0.1:5433 (where .ci/run starts
	// one), else a container.
	EnvPG2AdminURL = "TENANCY_PG2_ADMIN_URL"
	// EnvRedisAddr is a Redis host:port. Set, it is the only server tried.
	EnvRedisAddr = "TENANCY_REDIS_ADDR"
	// EnvRedisClusterAddrs is a comma-separated list of Redis Cluster nodes.
	// Unset, 127.0.0.1:7001 is tried (where .ci/run starts a cluster).
	EnvRedisClusterAddrs = "TENANCY_REDIS_CLUSTER_ADDRS"
	// EnvRequireServices set to "1" turns a missing service from a skip
	// into a test failure.
	EnvRequireServices = "TENANCY_REQUIRE_SERVICES"
	// EnvForceDocker set to "1" always starts containers: no environment
	// URL and no localhost server is used.
	EnvForceDocker = "TENANCY_FORCE_DOCKER"
	// EnvDockerPGImage is the PostgreSQL image (default postgres:15-alpine).
	EnvDockerPGImage = "TENANCY_DOCKER_PG_IMAGE"
	// EnvDockerRedisImage is the Redis image (default redis:7-alpine).
	EnvDockerRedisImage = "TENANCY_DOCKER_REDIS_IMAGE"
	// EnvDockerNetwork is "host" for host networking on a free loopback
	// port; empty for the default bridge with a published port.
	EnvDockerNetwork = "TENANCY_DOCKER_NETWORK"
	// ContainerLabel marks every container testenv starts.
	ContainerLabel = "tenancykit.test"

	localPGURL     = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	localPG2URL    = "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"
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
	// Container is the ID of the container of a "docker" service.
	Container string
}

// RequireServices reports whether TENANCY_REQUIRE_SERVICES=1.
func RequireServices() bool { return os.Getenv(EnvRequireServices) == "1" }

// ForceDocker reports whether TENANCY_FORCE_DOCKER=1.
func ForceDocker() bool { return os.Getenv(EnvForceDocker) == "1" }

// FindPostgreSQL returns a PostgreSQL server with admin rights: the one named
// by TENANCY_PG_ADMIN_URL, else 127.0.0.1:5432 as user postgres, else a new
// container. The error names PostgreSQL and what was tried.
func FindPostgreSQL(ctx context.Context) (Service, error) {
	return find(ctx, pgFinder("PostgreSQL", EnvPGAdminURL, localPGURL, "PostgreSQL on 127.0.0.1:5432 with user postgres"))
}

// FindSecondPostgreSQL returns a second PostgreSQL server, another cluster
// than [FindPostgreSQL]'s: TENANCY_PG2_ADMIN_URL, else 127.0.0.1:5433 as
// user postgres, else a new container.
func FindSecondPostgreSQL(ctx context.Context) (Service, error) {
	return find(ctx, pgFinder("second PostgreSQL", EnvPG2AdminURL, localPG2URL, "a second PostgreSQL cluster on 127.0.0.1:5433 with user postgres"))
}

func pgFinder(name, env, local, localDesc string) finder {
	return finder{
		name: name, env: env, local: local,
		localDesc: localDesc, show: redact, ping: pingPG,
		container: container{
			image: envOr(EnvDockerPGImage, "postgres:15-alpine"), port: "5432",
			env: []string{"POSTGRES_PASSWORD=tenancy", "POSTGRES_USER=postgres"},
			cmd: func(port string) []string {
				return []string{"postgres", "-p", port, "-c", "listen_addresses=127.0.0.1"}
			},
			addr: func(hostPort string) string {
				return "postgres://postgres:tenancy@" + hostPort + "/postgres?sslmode=disable"
			},
			ping: pingPG,
		},
	}
}

// FindRedis returns a Redis server: TENANCY_REDIS_ADDR, else 127.0.0.1:6379,
// else a new container. The error names Redis and what was tried.
func FindRedis(ctx context.Context) (Service, error) {
	return find(ctx, finder{
		name: "Redis", env: EnvRedisAddr, local: localRedisAddr,
		localDesc: "Redis on " + localRedisAddr, show: func(a string) string { return a }, ping: pingRedis,
		container: container{
			image: envOr(EnvDockerRedisImage, "redis:7-alpine"), port: "6379",
			cmd: func(port string) []string {
				return []string{"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}
			},
			addr: func(hostPort string) string { return hostPort },
			ping: pingRedis,
		},
	})
}

// finder is how one kind of server is found: its variable, its localhost
// address, its container.
type finder struct {
	name, env, local, localDesc string
	show                        func(string) string // the address as messages show it
	ping                        func(context.Context, string) error
	container                   container
}

// find tries f's variable, else localhost, else a container (only the
// container under TENANCY_FORCE_DOCKER=1).
func find(ctx context.Context, f finder) (Service, error) {
	svc := Service{Name: f.name, Close: func() {}}
	var localErr error = errors.New(EnvForceDocker + "=1")
	if !ForceDocker() {
		if addr := os.Getenv(f.env); addr != "" {
			if err := f.ping(ctx, addr); err != nil {
				return svc, fmt.Errorf("%w: %s at %s=%s did not answer: %v", ErrUnavailable, f.name, f.env, f.show(addr), err)
			}
			svc.URL, svc.Source = addr, f.env
			return svc, nil
		}
		if localErr = f.ping(ctx, f.local); localErr == nil {
			svc.URL, svc.Source = f.local, "localhost"
			return svc, nil
		}
	}
	c, err := startContainer(ctx, f.container)
	if err != nil {
		return svc, fmt.Errorf("%w: %s not found: set %s, or run %s (%v), or a Docker engine (%v)",
			ErrUnavailable, f.name, f.env, f.localDesc, localErr, err)
	}
	svc.URL, svc.Source, svc.Close, svc.Container = c.url, "docker", c.close, c.id
	return svc, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
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

// dockerEngine is shared by every container this process starts.
var dockerEngine = sync.OnceValues(func() (*engine, error) {
	e, err := newEngine()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if err := e.ping(ctx); err != nil {
		return nil, fmt.Errorf("no Docker engine answered: %w", err)
	}
	return e, nil
})

// container describes a server to start in Docker.
type container struct {
	image string // repository:tag
	port  string // the server's port in the image's default network mode
	env   []string
	// cmd is the command that runs the server on port, used on the host
	// network (where testenv picks the port).
	cmd  func(port string) []string
	addr func(hostPort string) string
	ping func(context.Context, string) error
}

// started is a running container.
type started struct {
	id, url string
	close   func()
}

// startContainer runs c's image, waits until ping answers and returns the
// address built by addr. An absent image is pulled with a deadline.
func startContainer(ctx context.Context, c container) (started, error) {
	e, err := dockerEngine()
	if err != nil {
		return started{}, err
	}
	repo, tag, ok := strings.Cut(c.image, ":")
	if !ok {
		tag = "latest"
	}
	image := repo + ":" + tag
	if has, err := e.hasImage(ctx, image); err != nil {
		return started{}, fmt.Errorf("inspect %s: %w", image, err)
	} else if !has {
		pullCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := e.pull(pullCtx, repo, tag)
		cancel()
		if err != nil {
			return started{}, fmt.Errorf("pull %s: %w", image, err)
		}
	}
	spec := runSpec{image: image, env: c.env, labels: map[string]string{ContainerLabel: "1"}, port: c.port,
		host: os.Getenv(EnvDockerNetwork) == "host"}
	var hostPort string
	if spec.host {
		if hostPort, err = freePort(); err != nil {
			return started{}, err
		}
		spec.cmd = c.cmd(hostPort)
	}
	id, err := e.run(ctx, spec)
	if err != nil {
		return started{}, fmt.Errorf("run %s: %w", c.image, err)
	}
	track(id)
	closeFn := func() {
		_ = e.remove(context.Background(), id)
		untrack(id)
	}
	if !spec.host {
		info, err := e.inspect(ctx, id)
		if err != nil {
			closeFn()
			return started{}, fmt.Errorf("inspect %s: %w", c.image, err)
		}
		b := info.NetworkSettings.Ports[c.port+"/tcp"]
		if len(b) == 0 {
			closeFn()
			return started{}, fmt.Errorf("%s: port %s was not published", c.image, c.port)
		}
		hostPort = b[0].HostPort
	}
	url := c.addr(net.JoinHostPort("127.0.0.1", hostPort))
	if err := retry(ctx, 60*time.Second, func() error { return c.ping(ctx, url) }); err != nil {
		closeFn()
		return started{}, fmt.Errorf("%s did not become ready at %s: %w", c.image, url, err)
	}
	return started{id: id, url: url, close: closeFn}, nil
}

// freePort returns a loopback port nothing listens on now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// running are the containers this process started and has not removed;
// an interrupt removes them (see Main).
var running = struct {
	sync.Mutex
	ids map[string]bool
}{ids: map[string]bool{}}

func track(id string)   { running.Lock(); running.ids[id] = true; running.Unlock() }
func untrack(id string) { running.Lock(); delete(running.ids, id); running.Unlock() }

// removeRunning force-removes every container this process started.
func removeRunning() {
	e, err := dockerEngine()
	if err != nil {
		return
	}
	running.Lock()
	defer running.Unlock()
	for id := range running.ids {
		_ = e.remove(context.Background(), id)
		delete(running.ids, id)
	}
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
