// Package provisiontest gives a test of a Tenancy service a throwaway
// database of its own, in the manner of net/http/httptest: the owner and app
// roles set up by provision.Bootstrap, a provision.Registry and a number of
// provisioned tenants, all removed again when the test ends.
//
//	func TestProjects(t *testing.T) {
//		env := provisiontest.New(t, provisiontest.Options{
//			Builder: provision.DDL(`CREATE TABLE projects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, name text)`),
//			Tenants: 2,
//		})
//		pool := env.AppPool(t) // a *pgtenant.Pool as the app role
//		_, err := pool.Exec(env.Context(0), "INSERT INTO projects (name) VALUES ('a')")
//		...
//	}
//
// It needs a PostgreSQL administrator (a superuser, or a role with
// CREATEROLE and CREATEDB): Options.AdminURL, else the environment variable
// TENANCY_TEST_ADMIN_URL, else postgres://postgres@127.0.0.1:5432/postgres.
// Without one the test fails, naming the variable: a test that quietly
// skipped would prove nothing.
package provisiontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

// EnvAdminURL names the environment variable that gives the administrator
// connection when Options.AdminURL is empty.
const EnvAdminURL = "TENANCY_TEST_ADMIN_URL"

// DefaultAdminURL is used when neither Options.AdminURL nor EnvAdminURL is
// set.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Options configures [New]. Zero fields mean their documented defaults.
type Options struct {
	// AdminURL connects as a PostgreSQL administrator. Defaults to
	// $TENANCY_TEST_ADMIN_URL, then DefaultAdminURL.
	AdminURL string
	// Builder builds each tenant's schema (provision.Config.Builder).
	// Defaults to none: empty schemas.
	Builder provision.Builder
	// SchemaBuilder, instead of Builder, builds each tenant's schema outside
	// Create's transaction, e.g. a *migrate.Migrator.
	SchemaBuilder provision.SchemaBuilder
	// Slugs are the tenants New provisions, in order. Defaults to none.
	Slugs []string
	// Tenants is how many tenants New provisions in all: beyond Slugs, they
	// are named "tenant_<n>" (n counting from 1 over all of them).
	Tenants int
	// Configure, if set, adjusts the registry's configuration before New
	// creates the registry.
	Configure func(*provision.Config)
}

// Env is a throwaway database with its roles, registry and tenants.
type Env struct {
	// Database, OwnerRole and AppRole are the names New chose.
	Database, OwnerRole, AppRole string
	// OwnerURL and AppURL connect as the owner and app roles.
	OwnerURL, AppURL string
	// Owner is a pool as the owner role, closed when the test ends.
	Owner *pgxpool.Pool
	// Registry is the tenant registry of the database.
	Registry *provision.Registry
	// Tenants are the tenants New provisioned, in order.
	Tenants []provision.Record
}

// New sets up a throwaway database for t and removes it, with its roles,
// when t ends (also when t fails). A failure to set it up fails t.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	env, cleanup, err := Start(context.Background(), opts)
	if cleanup != nil {
		t.Cleanup(cleanup)
	}
	if err != nil {
		t.Fatalf("provisiontest: %v", err)
	}
	return env
}

// Start is New for code that has no testing.TB — testable examples, demo
// programs: it returns the Env and the function that removes it, which the
// caller must call (also after an error, when it is not nil: it then removes
// whatever set-up got as far as making). Calling it again does nothing.
func Start(ctx context.Context, opts Options) (env *Env, cleanup func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	adminURL := opts.AdminURL
	if adminURL == "" {
		adminURL = os.Getenv(EnvAdminURL)
	}
	if adminURL == "" {
		adminURL = DefaultAdminURL
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, nil, fmt.Errorf("connect as the PostgreSQL administrator: %w (set %s, or Options.AdminURL)", err, EnvAdminURL)
	}
	defer admin.Close(context.Background())

	base := "pt_" + randomHex(6)
	ownerPW, appPW := randomHex(12), randomHex(12)
	// e, not the named result: a failed Start returns a nil Env, and the
	// cleanup it returns must still remove what was made.
	e := &Env{Database: base, OwnerRole: base + "_owner", AppRole: base + "_app"}
	env = e
	var closers []func()
	var once sync.Once
	cleanup = func() {
		once.Do(func() {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
			drop(adminURL, e)
		})
	}
	if err := provision.Bootstrap(ctx, admin, provision.BootstrapConfig{
		Database: env.Database, OwnerRole: env.OwnerRole, OwnerPassword: ownerPW, AppRole: env.AppRole, AppPassword: appPW,
	}); err != nil {
		return nil, cleanup, e.failed(err)
	}
	cc := admin.Config()
	roleURL := func(role, password string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(role, password),
			Host: net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), Path: "/" + env.Database, RawQuery: "sslmode=disable"}
		return u.String()
	}
	env.OwnerURL, env.AppURL = roleURL(env.OwnerRole, ownerPW), roleURL(env.AppRole, appPW)
	if env.Owner, err = pgxpool.New(ctx, env.OwnerURL); err != nil {
		return nil, cleanup, e.failed(err)
	}
	closers = append(closers, env.Owner.Close)
	cfg := provision.Config{Owner: env.Owner, AppRole: env.AppRole, Builder: opts.Builder, SchemaBuilder: opts.SchemaBuilder,
		Logger: slog.New(slog.DiscardHandler)}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	if env.Registry, err = provision.New(ctx, cfg); err != nil {
		return nil, cleanup, e.failed(err)
	}
	slugs := opts.Slugs
	for i := len(slugs); i < opts.Tenants; i++ {
		slugs = append(slugs, fmt.Sprintf("tenant_%d", i+1))
	}
	for _, slug := range slugs {
		rec, err := env.Registry.Create(ctx, provision.Spec{Slug: slug})
		if err != nil {
			return nil, cleanup, e.failed(fmt.Errorf("create tenant %s: %w", slug, err))
		}
		env.Tenants = append(env.Tenants, rec)
	}
	return env, cleanup, nil
}

// failed names the database in a set-up error: the cleanup Start returns
// removes it and its roles.
func (e *Env) failed(err error) error {
	return fmt.Errorf("set up database %s (roles %s, %s): %w", e.Database, e.OwnerRole, e.AppRole, err)
}

// Context returns a background context carrying tenant i of Tenants.
func (e *Env) Context(i int) context.Context {
	return tenant.NewContext(context.Background(), e.Tenants[i].Tenant())
}

// AppPool returns a pgtenant pool connected as the app role, closed when t
// ends; configure, if given, adjusts its configuration first.
func (e *Env) AppPool(t testing.TB, configure ...func(*pgtenant.Config)) *pgtenant.Pool {
	t.Helper()
	pc, err := pgxpool.ParseConfig(e.AppURL)
	if err != nil {
		t.Fatalf("provisiontest: %v", err)
	}
	cfg := pgtenant.Config{PoolConfig: pc}
	for _, f := range configure {
		f(&cfg)
	}
	p, err := pgtenant.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("provisiontest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// drop removes the database and the roles, however far New got. A drop
// that fails (a DROP DATABASE outlasting its deadline on a loaded machine,
// say) is tried again; what is still there after three attempts is reported
// on standard error, naming it.
func drop(adminURL string, env *Env) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if attempt > 1 {
			time.Sleep(time.Duration(attempt) * time.Second)
		}
		if err = dropOnce(adminURL, env); err == nil {
			return
		}
	}
	fmt.Fprintf(os.Stderr, "provisiontest: WARNING: left on the server: %v\n", err)
}

func dropOnce(adminURL string, env *Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	var errs []error
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{env.Database}.Sanitize()+" WITH (FORCE)"); err != nil {
		errs = append(errs, fmt.Errorf("database %s: %w", env.Database, err))
	}
	for _, r := range []string{env.AppRole, env.OwnerRole} {
		if _, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("role %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
