package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/rolecheck"
)

// BootstrapConfig names the roles and the database [Bootstrap] sets up.
type BootstrapConfig struct {
	// Database is the application's database. Created, owned by OwnerRole,
	// if it does not exist. Required.
	Database string
	// OwnerRole owns the tenant schemas and the registry: provision and
	// migrate connect as it. Required.
	OwnerRole string
	// OwnerPassword is set when Bootstrap creates OwnerRole. Optional
	// (without one the role can log in only where pg_hba trusts it); an
	// existing role's password is left alone.
	OwnerPassword string
	// AppRole is the role the application's pgtenant pool connects as.
	// Required, and not OwnerRole.
	AppRole string
	// AppPassword is set when Bootstrap creates AppRole; see OwnerPassword.
	AppPassword string
}

// ErrUnsafeRole is matched by the error of [Bootstrap] when an existing
// role could defeat row level security: a superuser, a role with BYPASSRLS,
// CREATEROLE (it could grant itself the owner role and turn row level
// security off) or REPLICATION, an app role with CREATEDB, or an app role
// that is a member of another role (it could SET ROLE to it and holds its
// privileges). The message names the role and what to change.
var ErrUnsafeRole = errors.New("provision: role unsafe for tenancy")

// Bootstrap sets up the roles and database grants Tenancy needs, on a
// connection with the right to create roles and databases (a superuser, or
// a role with CREATEROLE and CREATEDB). It is idempotent: it creates what is
// missing and checks what exists, and refuses (with [ErrUnsafeRole]) an
// existing role that would defeat row level security instead of altering
// it. What it runs, for teams that set up roles by hand:
//
//	CREATE ROLE owner LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD '...';
//	CREATE ROLE app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD '...';
//	CREATE DATABASE appdb OWNER owner;   -- or, for an existing database:
//	GRANT CONNECT, CREATE, TEMPORARY ON DATABASE appdb TO owner;
//	REVOKE ALL ON DATABASE appdb FROM PUBLIC;
//	GRANT CONNECT, TEMPORARY ON DATABASE appdb TO app;
//
// The app role must be a member of no role and have none of SUPERUSER,
// BYPASSRLS, CREATEROLE, CREATEDB and REPLICATION; the owner none but
// CREATEDB. Registry.Audit reports any of these later, and the app role's
// role and database settings that pgtenant.New would refuse.
func Bootstrap(ctx context.Context, admin *pgx.Conn, cfg BootstrapConfig) error {
	for _, f := range []struct{ field, name string }{{"Database", cfg.Database}, {"OwnerRole", cfg.OwnerRole}, {"AppRole", cfg.AppRole}} {
		if f.name == "" || len(f.name) > 63 || strings.ContainsRune(f.name, 0) {
			return fmt.Errorf("%w: BootstrapConfig.%s %q must be 1 to 63 bytes without NUL", ErrInvalidConfig, f.field, f.name)
		}
	}
	if cfg.OwnerRole == cfg.AppRole {
		return fmt.Errorf("%w: BootstrapConfig.AppRole must differ from OwnerRole (%q): the owner bypasses its own tables' policies unless forced, and may alter them", ErrInvalidConfig, cfg.AppRole)
	}
	if err := ensureRole(ctx, admin, cfg.OwnerRole, cfg.OwnerPassword, false); err != nil {
		return err
	}
	if err := ensureRole(ctx, admin, cfg.AppRole, cfg.AppPassword, true); err != nil {
		return err
	}
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", cfg.Database).Scan(&exists); err != nil {
		return fmt.Errorf("provision: bootstrap: %w", err)
	}
	db, owner, app := pgx.Identifier{cfg.Database}.Sanitize(), pgx.Identifier{cfg.OwnerRole}.Sanitize(), pgx.Identifier{cfg.AppRole}.Sanitize()
	var stmts []string
	if !exists {
		stmts = append(stmts, "CREATE DATABASE "+db+" OWNER "+owner)
	} else {
		stmts = append(stmts, "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "+db+" TO "+owner)
	}
	stmts = append(stmts,
		"REVOKE ALL ON DATABASE "+db+" FROM PUBLIC",
		"GRANT CONNECT, TEMPORARY ON DATABASE "+db+" TO "+app)
	for _, s := range stmts {
		// One statement each: CREATE DATABASE cannot run in a transaction.
		if _, err := admin.Exec(ctx, s); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created meanwhile by another Bootstrap
				continue
			}
			return fmt.Errorf("provision: bootstrap: %s: %w", s, err)
		}
	}
	return nil
}

// ensureRole creates role (LOGIN, with password if given) or checks the
// existing one.
func ensureRole(ctx context.Context, admin *pgx.Conn, role, password string, app bool) error {
	attrs := "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
	if app {
		attrs += " NOINHERIT"
	}
	// The server quotes the name and the password (format's %I and %L):
	// both stay values, never spliced by the client.
	var create string
	if err := admin.QueryRow(ctx, "SELECT format('CREATE ROLE %I "+attrs+"', $1::text) || CASE WHEN $2::text <> '' THEN format(' PASSWORD %L', $2::text) ELSE '' END",
		role, password).Scan(&create); err != nil {
		return fmt.Errorf("provision: bootstrap: %w", err)
	}
	if _, err := admin.Exec(ctx, create, pgx.QueryExecModeSimpleProtocol); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42710" { // 42710: the role exists
			return fmt.Errorf("provision: bootstrap: create role %q: %w", role, err)
		}
	}
	var super, bypass bool
	var has [3]bool // rolecheck.Attributes
	var groups []string
	if err := admin.QueryRow(ctx, `SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
			coalesce(array_agg(g.rolname::text ORDER BY g.rolname) FILTER (WHERE g.rolname IS NOT NULL), '{}')
		FROM pg_roles r
		LEFT JOIN pg_auth_members m ON m.member = r.oid
		LEFT JOIN pg_roles g ON g.oid = m.roleid
		WHERE r.rolname = $1 GROUP BY r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, r.rolreplication`, role).
		Scan(&super, &bypass, &has[0], &has[1], &has[2], &groups); err != nil {
		return fmt.Errorf("provision: bootstrap: check role %q: %w", role, err)
	}
	quoted := pgx.Identifier{role}.Sanitize()
	switch {
	case super:
		return fmt.Errorf("%w: %q is a superuser, which bypasses every policy (ALTER ROLE %s NOSUPERUSER, or choose another role)", ErrUnsafeRole, role, quoted)
	case bypass:
		return fmt.Errorf("%w: %q has BYPASSRLS (ALTER ROLE %s NOBYPASSRLS, or choose another role)", ErrUnsafeRole, role, quoted)
	case app && len(groups) > 0:
		return fmt.Errorf("%w: app role %q is a member of %s: it could SET ROLE to them and holds their privileges (REVOKE them, or choose another role)", ErrUnsafeRole, role, strings.Join(groups, ", "))
	}
	for i, a := range rolecheck.Attributes {
		// The owner may create databases (its own are beyond the tenants'
		// pools anyway); nothing else reaches past the policies.
		if has[i] && (app || a.Name != "CREATEDB") {
			return fmt.Errorf("%w: %q has %s: %s (ALTER ROLE %s NO%s, or choose another role)", ErrUnsafeRole, role, a.Name, a.Why, quoted, a.Name)
		}
	}
	return nil
}
