package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// CitusURLVar names the environment variable that holds the admin URL of a
// Citus coordinator with at least one worker, for the tests that run on
// Citus. There is no Citus package on Debian, so CI does not set it; the
// package documentation of internal/citustest says how to build a cluster.
const CitusURLVar = "TENANCY_CITUS_URL"

var citusState struct {
	once sync.Once
	pg   *PG
	err  error
}

// Citus returns a *PG on the Citus coordinator named by TENANCY_CITUS_URL,
// in that URL's database (Citus keeps its node list per database, so the
// tests do not make a database of their own), with an owner role and an app
// role made for this process; [Main] drops them, and everything they own,
// at the end. The test is skipped when the variable is unset, also under
// TENANCY_REQUIRE_SERVICES=1, and fails when the server named there cannot
// be used.
func Citus(t testing.TB) *PG {
	t.Helper()
	url := os.Getenv(CitusURLVar)
	if url == "" {
		t.Skipf("%s is not set: no Citus cluster to run on (see the internal/citustest package documentation for how to build one)", CitusURLVar)
	}
	citusState.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		citusState.pg, citusState.err = setupCitus(ctx, url)
	})
	if citusState.err != nil {
		t.Fatalf("Citus at %s: %v", CitusURLVar, citusState.err)
	}
	return citusState.pg
}

func setupCitus(ctx context.Context, adminURL string) (*PG, error) {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var workers int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_dist_node WHERE noderole = 'primary' AND groupid <> 0").Scan(&workers); err != nil {
		return nil, fmt.Errorf("not a Citus coordinator: %w", err)
	}
	if workers == 0 {
		return nil, fmt.Errorf("the coordinator has no worker nodes")
	}
	base := fmt.Sprintf("%scitus_%s_%d_%s", namePrefix, packageName(), time.Now().Unix(), randomHex(3))
	pg := &PG{base: base, Database: admin.Config().Database, OwnerRole: base + "_owner", AppRole: base + "_app", serverURL: adminURL, AdminURL: adminURL}
	ownerPW, appPW := randomHex(12), randomHex(12)
	stmts := []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD '%s'", ident(pg.OwnerRole), ownerPW),
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD '%s'", ident(pg.AppRole), appPW),
		fmt.Sprintf("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %s TO %s", ident(pg.Database), ident(pg.OwnerRole)),
		fmt.Sprintf("GRANT CONNECT, TEMPORARY ON DATABASE %s TO %s", ident(pg.Database), ident(pg.AppRole)),
	}
	for _, s := range stmts {
		if _, err := admin.Exec(ctx, s); err != nil {
			dropCitus(context.WithoutCancel(ctx), admin, pg)
			return nil, fmt.Errorf("set up roles: %w", err)
		}
	}
	pg.ownerPW, pg.appPW = ownerPW, appPW
	pg.OwnerURL = roleURL(adminURL, pg.OwnerRole, ownerPW, pg.Database)
	pg.AppURL = roleURL(adminURL, pg.AppRole, appPW, pg.Database)
	return pg, nil
}

// dropCitus drops what the owner and app roles own on the cluster, then
// the roles.
func dropCitus(ctx context.Context, admin *pgx.Conn, pg *PG) {
	for _, role := range []string{pg.OwnerRole, pg.AppRole} {
		_, _ = admin.Exec(ctx, fmt.Sprintf("DROP OWNED BY %s CASCADE", ident(role)))
		_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+ident(role))
	}
}

func teardownCitus() {
	pg := citusState.pg
	if pg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if admin, err := pgx.Connect(ctx, pg.AdminURL); err == nil {
		dropCitus(ctx, admin, pg)
		admin.Close(ctx)
	}
}
