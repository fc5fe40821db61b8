package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/tenant"
)

// Main runs the package's tests and then drops the database and roles that
// [PostgreSQL] created and removes any container started for them. Use it
// from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Examples cannot skip themselves, so when a service is missing and
// TENANCY_REQUIRE_SERVICES is not 1, Main skips the package's examples
// (-test.skip=^Example) and says why.
func Main(m *testing.M) {
	flag.Parse()
	// An interrupt removes the containers this process started before it
	// exits; a normal end removes them in teardown.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "testenv: %v: removing containers\n", sig)
		removeRunning()
		os.Exit(130)
	}()
	if ForceDocker() {
		// Testable examples find their servers by the variables a user
		// would set; point them at the containers too.
		if svc, err := pgService(); err == nil {
			_ = os.Setenv("TENANCY_TEST_ADMIN_URL", svc.URL)
		}
		if addr, err := redis(); err == nil {
			_ = os.Setenv("REDIS_ADDR", addr)
		}
	}
	if !RequireServices() {
		_, pgErr := pgService()
		_, redisErr := redis()
		if err := errors.Join(pgErr, redisErr); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: skipping examples: %v\n", err)
			_ = flag.Set("test.skip", "^Example")
		}
	}
	code := m.Run()
	teardown()
	os.Exit(code)
}

// PG is the package's own PostgreSQL database and roles.
type PG struct {
	// AdminURL connects to the package's database with admin rights. Use it
	// only to arrange what a test needs (a privileged role, a broken
	// catalog state), never as the connection under test.
	AdminURL string
	// Database is the name of the package's database.
	Database string
	// OwnerRole owns Database: it provisions tenants and runs migrations.
	OwnerRole string
	// OwnerURL connects to Database as OwnerRole.
	OwnerURL string
	// AppRole is NOSUPERUSER, NOBYPASSRLS and owns nothing: the role the
	// tenant-scoped pool uses, subject to every RLS policy.
	AppRole string
	// AppURL connects to Database as AppRole.
	AppURL string

	base      string
	serverURL string
	ownerPW   string
	appPW     string
}

var (
	pgState struct {
		once    sync.Once
		svcOnce sync.Once
		pg      *PG
		svc     Service
		svcErr  error
		err     error
	}
	pg2State struct {
		once    sync.Once
		svcOnce sync.Once
		pg      *PG
		svc     Service
		svcErr  error
		err     error
	}
	redisState struct {
		once sync.Once
		svc  Service
		err  error
	}
)

// PostgreSQL returns the package's database, creating it with its roles on
// first use. When no server can be found the test is skipped, or fails under
// TENANCY_REQUIRE_SERVICES=1.
func PostgreSQL(t testing.TB) *PG {
	t.Helper()
	pg, err := postgreSQL()
	if err != nil {
		unavailable(t, err)
	}
	return pg
}

// ExamplePostgreSQL is [PostgreSQL] for testable examples, which have no
// testing.TB: it panics when PostgreSQL is missing, which [Main] prevents
// unless TENANCY_REQUIRE_SERVICES=1.
func ExamplePostgreSQL() *PG {
	pg, err := postgreSQL()
	if err != nil {
		panic(err)
	}
	return pg
}

// SecondPostgreSQL returns the package's database on a second PostgreSQL
// server (another cluster than [PostgreSQL]'s, for silo placements),
// creating it with owner and app roles of its own on first use; [Main]
// drops them. Missing, the test is skipped, or fails under
// TENANCY_REQUIRE_SERVICES=1 (.ci/run starts one on 127.0.0.1:5433).
func SecondPostgreSQL(t testing.TB) *PG {
	t.Helper()
	pg2State.once.Do(func() {
		pg2State.svcOnce.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			pg2State.svc, pg2State.svcErr = FindSecondPostgreSQL(ctx)
		})
		if pg2State.svcErr != nil {
			pg2State.err = pg2State.svcErr
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pg2State.pg, pg2State.err = setupPG(ctx, pg2State.svc.URL)
	})
	if pg2State.err != nil {
		unavailable(t, pg2State.err)
	}
	return pg2State.pg
}

// pgService finds the server once per process; the package's database is
// made only when a test asks for it, so a process that needs none (a fuzz
// worker, say) leaves nothing behind.
func pgService() (Service, error) {
	pgState.svcOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pgState.svc, pgState.svcErr = FindPostgreSQL(ctx)
	})
	return pgState.svc, pgState.svcErr
}

func postgreSQL() (*PG, error) {
	pgState.once.Do(func() {
		svc, err := pgService()
		if err != nil {
			pgState.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pgState.pg, pgState.err = setupPG(ctx, svc.URL)
	})
	return pgState.pg, pgState.err
}

func redis() (string, error) {
	redisState.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		redisState.svc, redisState.err = FindRedis(ctx)
	})
	return redisState.svc.URL, redisState.err
}

// Redis returns the address of a Redis server. When none can be found the
// test is skipped, or fails under TENANCY_REQUIRE_SERVICES=1. Packages share
// the server: keep each test's keys apart with [Tenant] or [UniqueID].
func Redis(t testing.TB) string {
	t.Helper()
	addr, err := redis()
	if err != nil {
		unavailable(t, err)
	}
	return addr
}

// RedisCluster returns the nodes of a Redis Cluster. When none answers the
// test is skipped, or fails under TENANCY_REQUIRE_SERVICES=1.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	addrs, err := FindRedisCluster(context.Background())
	if err != nil {
		unavailable(t, err)
	}
	return addrs
}

// ExampleRedis is [Redis] for testable examples; see [ExamplePostgreSQL].
func ExampleRedis() string {
	addr, err := redis()
	if err != nil {
		panic(err)
	}
	return addr
}

// RedisClient returns a rueidis client of the [Redis] server, closed when the
// test ends.
func RedisClient(t testing.TB) rueidis.Client {
	t.Helper()
	addr := Redis(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		t.Fatalf("testenv: connect to Redis at %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if RequireServices() {
		t.Fatalf("testenv: %v (%s=1, so a missing service fails the run)", err, EnvRequireServices)
	}
	t.Skipf("testenv: %v (skipping; set %s=1 to fail instead)", err, EnvRequireServices)
}

// OwnerPool returns a pool connected as the owner role, closed when the test ends.
func (p *PG) OwnerPool(t testing.TB) *pgxpool.Pool { t.Helper(); return p.pool(t, p.OwnerURL) }

// AppPool returns a plain pgx pool connected as the app role, closed when the test ends.
func (p *PG) AppPool(t testing.TB) *pgxpool.Pool { t.Helper(); return p.pool(t, p.AppURL) }

// AdminPool returns a pool with admin rights on the package's database,
// closed when the test ends. Only for arranging test state.
func (p *PG) AdminPool(t testing.TB) *pgxpool.Pool { t.Helper(); return p.pool(t, p.AdminURL) }

// AppConfig returns a pool config for the app role.
func (p *PG) AppConfig(t testing.TB) *pgxpool.Config {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(p.AppURL)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return cfg
}

// CreateRole creates a login role with the given attributes (e.g.
// "BYPASSRLS" or "SUPERUSER"), allowed to connect to the package's database,
// and returns its URL. The role is dropped when the test ends.
func (p *PG) CreateRole(t testing.TB, attributes string) string {
	t.Helper()
	url, name, err := p.createRole(attributes)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		a, err := pgx.Connect(context.Background(), p.AdminURL)
		if err != nil {
			return
		}
		defer a.Close(context.Background())
		_, _ = a.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
		// DROP OWNED revokes the role's database privileges, which updates
		// the database's pg_database row: under the GRANTs' lock, or a
		// concurrent GRANT fails with "tuple concurrently updated".
		_ = pgx.BeginFunc(context.Background(), a, func(tx pgx.Tx) error {
			_, err := tx.Exec(context.Background(), grantLockSQL+"; DROP OWNED BY "+ident(name)+"; DROP ROLE IF EXISTS "+ident(name), pgx.QueryExecModeSimpleProtocol)
			return err
		})
		_, _ = a.Exec(context.Background(), "DROP ROLE IF EXISTS "+ident(name))
	})
	return url
}

// NewDatabase creates another database with the same owner and app roles,
// dropped when the test ends: for tests that inspect a whole database (an
// audit, say) and must not see what other tests create meanwhile.
func (p *PG) NewDatabase(t testing.TB) *PG {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s_d%d", p.base, nameSeq.Add(1))
	admin, err := pgx.Connect(ctx, p.serverURL)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer admin.Close(ctx)
	for _, s := range []string{
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", ident(name), ident(p.OwnerRole)),
		fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", ident(name)),
		fmt.Sprintf("GRANT CONNECT, TEMPORARY ON DATABASE %s TO %s", ident(name), ident(p.AppRole)),
	} {
		if _, err := admin.Exec(ctx, s); err != nil {
			t.Fatalf("testenv: %s: %v", s, err)
		}
	}
	t.Cleanup(func() {
		a, err := pgx.Connect(context.Background(), p.serverURL)
		if err != nil {
			return
		}
		defer a.Close(context.Background())
		_, _ = a.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(name)))
	})
	return &PG{
		AdminURL: withDatabase(p.serverURL, name), Database: name,
		OwnerRole: p.OwnerRole, OwnerURL: roleURL(p.serverURL, p.OwnerRole, p.ownerPW, name),
		AppRole: p.AppRole, AppURL: roleURL(p.serverURL, p.AppRole, p.appPW, name),
		base: p.base, serverURL: p.serverURL, ownerPW: p.ownerPW, appPW: p.appPW,
	}
}

// PackageRole is [PG.CreateRole] for state shared by a package's tests and
// benchmarks: the role lives until [Main] drops the package's database.
func (p *PG) PackageRole(attributes string) (string, error) {
	url, _, err := p.createRole(attributes)
	return url, err
}

func (p *PG) createRole(attributes string) (url, name string, err error) {
	ctx := context.Background()
	name = fmt.Sprintf("%s_r%d", p.base, nameSeq.Add(1))
	password := randomHex(12)
	admin, err := pgx.Connect(ctx, p.AdminURL)
	if err != nil {
		return "", "", err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN %s PASSWORD '%s'", ident(name), attributes, password)); err != nil {
		return "", "", fmt.Errorf("create role %s: %w", name, err)
	}
	// Concurrent GRANTs on one database update its pg_database row at once
	// and one fails ("tuple concurrently updated"): parallel tests creating
	// roles take turns under an advisory lock on the database's name.
	grant := fmt.Sprintf(grantLockSQL+"; GRANT CONNECT ON DATABASE %s TO %s", ident(p.Database), ident(name))
	if err := pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, grant, pgx.QueryExecModeSimpleProtocol)
		return err
	}); err != nil {
		return "", "", fmt.Errorf("grant connect to %s: %w", name, err)
	}
	return roleURL(p.serverURL, name, password, p.Database), name, nil
}

// grantLockSQL takes, for the rest of the transaction, the lock under which
// tests change privileges on their database: concurrent changes update its
// pg_database row at once, and one fails ("tuple concurrently updated").
const grantLockSQL = "SELECT pg_advisory_xact_lock(hashtextextended('tenancy-testenv-grant:' || current_database(), 0))"

func (p *PG) pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Tenant returns a valid tenant whose ID and slug no other test, in this or
// any other package running at the same time, will use.
func Tenant(t testing.TB, slugPrefix string) tenant.Tenant {
	t.Helper()
	tn, err := tenant.New(UniqueID(slugPrefix), slugPrefix+"_"+randomHex(5))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return tn
}

// NewTenant is [Tenant] for testable examples: it panics on a bad prefix.
func NewTenant(slugPrefix string) tenant.Tenant {
	tn, err := tenant.New(UniqueID(slugPrefix), slugPrefix+"_"+randomHex(5))
	if err != nil {
		panic(err)
	}
	return tn
}

var idCounter atomic.Int64

// nameSeq numbers the roles and databases a process creates.
var nameSeq atomic.Int64

// UniqueID returns a valid tenant ID starting with prefix that no other
// process running now will produce.
func UniqueID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d-%s", prefix, os.Getpid(), idCounter.Add(1), randomHex(3))
}

const namePrefix = "tt_"

// setupPG creates the package's roles and database. Names carry the creation
// time so a later run can drop what a crashed run left behind.
func setupPG(ctx context.Context, adminURL string) (*PG, error) {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	sweepStale(ctx, admin)

	base := fmt.Sprintf("%s%s_%d_%s", namePrefix, packageName(), time.Now().Unix(), randomHex(3))
	pg := &PG{base: base, Database: base, OwnerRole: base + "_owner", AppRole: base + "_app", serverURL: adminURL}
	ownerPW, appPW := randomHex(12), randomHex(12)
	stmts := []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD '%s'", ident(pg.OwnerRole), ownerPW),
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD '%s'", ident(pg.AppRole), appPW),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", ident(pg.Database), ident(pg.OwnerRole)),
		fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", ident(pg.Database)),
		fmt.Sprintf("GRANT CONNECT, TEMPORARY ON DATABASE %s TO %s", ident(pg.Database), ident(pg.AppRole)),
	}
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, s); err != nil {
			if dropErr := dropPG(context.WithoutCancel(ctx), admin, base); dropErr != nil {
				err = errors.Join(err, fmt.Errorf("and cleaning up: %w", dropErr))
			}
			return nil, fmt.Errorf("PostgreSQL: set up test database: %w", err)
		}
	}
	pg.ownerPW, pg.appPW = ownerPW, appPW
	pg.AdminURL = withDatabase(adminURL, pg.Database)
	pg.OwnerURL = roleURL(adminURL, pg.OwnerRole, ownerPW, pg.Database)
	pg.AppURL = roleURL(adminURL, pg.AppRole, appPW, pg.Database)
	return pg, nil
}

func teardown() {
	teardownCitus()
	if pg := pgState.pg; pg != nil {
		if err := dropWithRetry(pgState.svc.URL, pg.base); err != nil {
			// Nothing may stay behind: say what did, loudly, for the next
			// run's sweep and for whoever reads the log.
			fmt.Fprintf(os.Stderr, "testenv: WARNING: left on the server after %d attempts: %v\n", dropAttempts, err)
		}
	}
	if pg := pg2State.pg; pg != nil {
		if err := dropWithRetry(pg2State.svc.URL, pg.base); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: WARNING: left on the second server after %d attempts: %v\n", dropAttempts, err)
		}
	}
	if pgState.svc.Close != nil {
		pgState.svc.Close()
	}
	if pg2State.svc.Close != nil {
		pg2State.svc.Close()
	}
	if redisState.svc.Close != nil {
		redisState.svc.Close()
	}
}

// dropAttempts is how many times teardown tries to drop the package's
// databases and roles: on a loaded machine a DROP DATABASE ... WITH (FORCE)
// can outlast one attempt's deadline, and a role cannot be dropped while a
// database it owns is still there.
const dropAttempts = 3

// dropPause is the wait before the second attempt (twice it before the
// third).
var dropPause = time.Second

// dropWithRetry drops base's databases and roles, on a fresh connection per
// attempt, until none is left.
func dropWithRetry(serverURL, base string) error {
	var err error
	for attempt := 1; attempt <= dropAttempts; attempt++ {
		if attempt > 1 {
			time.Sleep(time.Duration(attempt-1) * dropPause)
		}
		err = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			admin, err := pgx.Connect(ctx, serverURL)
			if err != nil {
				return err
			}
			defer admin.Close(context.WithoutCancel(ctx))
			dropErr := dropPG(ctx, admin, base)
			left, err := leftOf(ctx, admin, base)
			if err != nil {
				return errors.Join(dropErr, err)
			}
			if len(left) > 0 {
				return errors.Join(fmt.Errorf("still there: %s", strings.Join(left, ", ")), dropErr)
			}
			return nil
		}()
		if err == nil {
			return nil
		}
	}
	return err
}

// leftOf lists base's databases and roles still on the server.
func leftOf(ctx context.Context, admin *pgx.Conn, base string) ([]string, error) {
	rows, err := admin.Query(ctx, `SELECT 'database ' || datname FROM pg_database WHERE datname = $1 OR starts_with(datname, $1 || '_d')
		UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE starts_with(rolname, $1 || '_')`, base)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// dropPG drops base's databases, then its roles, and returns what failed.
func dropPG(ctx context.Context, admin *pgx.Conn, base string) error {
	var errs []error
	dbs, err := admin.Query(ctx, "SELECT datname FROM pg_database WHERE datname = $1 OR starts_with(datname, $1 || '_d')", base)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(dbs, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, db := range names {
		if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(db))); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", db, err))
		}
	}
	rows, err := admin.Query(ctx, "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", base+"_")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, r := range roles {
		if _, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+ident(r)); err != nil {
			errs = append(errs, fmt.Errorf("drop role %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

var staleName = regexp.MustCompile(`^(tt_[a-z0-9_]*?_(\d{9,})_[0-9a-f]{6})(_d\d+)?$`)

// sweepStale drops test databases (and their roles) older than six hours:
// leftovers of runs that were killed before Main could clean up.
func sweepStale(ctx context.Context, admin *pgx.Conn) {
	rows, err := admin.Query(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", namePrefix)
	if err != nil {
		return
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, n := range names {
		m := staleName.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		if sec, err := strconv.ParseInt(m[2], 10, 64); err == nil && time.Since(time.Unix(sec, 0)) > 6*time.Hour {
			_ = dropPG(ctx, admin, m[1]) // a sweep: the next one tries again
		}
	}
}

// packageName is the test binary's package, e.g. "pgtenant" for pgtenant.test.
func packageName() string {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
		if b.Len() == 16 {
			break
		}
	}
	if b.Len() == 0 {
		return "pkg"
	}
	return b.String()
}

func roleURL(adminURL, role, password, db string) string {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return ""
	}
	user := url.User(role)
	if password != "" {
		user = url.UserPassword(role, password)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     user,
		Host:     net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func withDatabase(adminURL, db string) string {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return ""
	}
	return roleURL(adminURL, cfg.User, cfg.Password, db)
}

// ident quotes a name that this package generated itself.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PostgreSQLService returns the server behind [PostgreSQL]: where it came
// from and, for a container, its ID.
func PostgreSQLService(t testing.TB) Service {
	t.Helper()
	PostgreSQL(t)
	return pgState.svc
}

// RedisService returns the server behind [Redis]; see [PostgreSQLService].
func RedisService(t testing.TB) Service {
	t.Helper()
	Redis(t)
	return redisState.svc
}
