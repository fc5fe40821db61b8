package pgtenant

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/internal/rolecheck"
)

// poolRole is what the first connection learns of the pool's role.
type poolRole struct {
	name          string
	super, bypass bool
	// member: a member of another role, so it could SET ROLE to it.
	member bool
	// citus: the citus extension is installed in the database.
	citus bool
	// attrs: CREATEROLE, CREATEDB, REPLICATION (rolecheck.Attributes).
	attrs [3]bool
	// settings: the role and database settings its connections inherit.
	settings []rolecheck.Setting
}

// learnSQL reads the pool's role, its attributes and the settings its
// connections inherit, in one simple-protocol message: its own transaction
// lifts the timeouts a role setting may have made too short for it, and it
// needs neither standard_conforming_strings nor pgx's sanitizer.
var learnSQL = `BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0;
	SELECT rolname, rolsuper, rolbypassrls,
			EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),
			` + rls.CitusInstalled + `, rolcreaterole, rolcreatedb, rolreplication
		FROM pg_catalog.pg_roles r WHERE rolname = session_user;
	` + rolecheck.SettingsSQL("session_user") + `;
	COMMIT`

// learnRole reads, on every new connection before anything else of the
// pool's runs on it, the role the pool's statements run as and the role and
// database settings the connection started with, and refuses the connection
// (so New, or the acquire that made it) when either is unsafe: a setting
// planted after New reaches no statement. The first connection's answer is
// kept: a role that is a member of no other role cannot SET ROLE to
// anything but itself, so no statement can have left another role on its
// connections, and the scope statement leaves out the role reset
// (noRoleReset). A superuser keeps it.
func (p *Pool) learnRole(ctx context.Context, c *pgx.Conn) error {
	r, err := readRole(ctx, c.PgConn())
	if err != nil {
		// A role setting may itself be why (a statement_timeout of 1 ms
		// cancels even this): ask again on a connection of our own whose
		// startup parameters override the role's timeouts, and name the
		// setting if it is one.
		cfg := c.Config().Copy()
		cfg.Tracer = nil
		for _, g := range []string{"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"} {
			cfg.RuntimeParams[g] = "0"
		}
		if side, serr := pgx.ConnectConfig(ctx, cfg); serr == nil {
			sr, serr := readRole(ctx, side.PgConn())
			_ = side.Close(ctx)
			if serr == nil {
				if refused := p.refuseRole(&sr); refused != nil {
					return refused
				}
			}
		}
		return fmt.Errorf("pgtenant: check the role: %w", err)
	}
	p.roleMu.Lock()
	if p.role == nil {
		p.role = &r
		p.noRoleReset.Store(!r.member && !r.super)
	}
	p.roleMu.Unlock()
	return p.refuseRole(&r)
}

// readRole runs learnSQL.
func readRole(ctx context.Context, c *pgconn.PgConn) (poolRole, error) {
	res, err := c.Exec(ctx, learnSQL).ReadAll()
	if err != nil {
		return poolRole{}, err
	}
	if len(res) != 6 || len(res[3].Rows) != 1 || len(res[3].Rows[0]) != 8 {
		return poolRole{}, errors.New("unexpected reply")
	}
	row := res[3].Rows[0]
	r := poolRole{name: string(row[0]), super: pgTrue(row[1]), bypass: pgTrue(row[2]), member: pgTrue(row[3]), citus: pgTrue(row[4]),
		attrs: [3]bool{pgTrue(row[5]), pgTrue(row[6]), pgTrue(row[7])}}
	for _, s := range res[4].Rows {
		r.settings = append(r.settings, rolecheck.Setting{Scope: string(s[0]), Name: string(s[1]), Value: string(s[2])})
	}
	return r, nil
}

// pgTrue reads a boolean in PostgreSQL's text format.
func pgTrue(b []byte) bool { return string(b) == "t" }

// refuseRole returns the *RoleSettingError or *PrivilegedRoleError for r,
// or nil when the pool may use it.
func (p *Pool) refuseRole(r *poolRole) error {
	for _, s := range r.settings {
		if why := rolecheck.Unsafe(s, p.cfg.setting); why != "" {
			return &RoleSettingError{Role: r.name, Scope: s.Scope, Name: s.Name, Value: s.Value, Why: why}
		}
	}
	if p.cfg.allow {
		return nil
	}
	switch {
	case r.super:
		return &PrivilegedRoleError{Role: r.name, Attribute: "SUPERUSER", Why: "it bypasses row level security"}
	case r.bypass:
		return &PrivilegedRoleError{Role: r.name, Attribute: "BYPASSRLS", Why: "it bypasses row level security"}
	}
	for i, a := range rolecheck.Attributes {
		if r.attrs[i] {
			return &PrivilegedRoleError{Role: r.name, Attribute: a.Name, Why: a.Why}
		}
	}
	return nil
}

// checkRole makes the pool's first connection, which learns the role and
// refuses it if it is unsafe (learnRole), decides Citus mode and chooses
// the senders.
func (p *Pool) checkRole(ctx context.Context) error {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		var pe *PrivilegedRoleError
		var se *RoleSettingError
		switch {
		case errors.As(err, &pe):
			return pe
		case errors.As(err, &se):
			return se
		}
		return fmt.Errorf("pgtenant: %w", err)
	}
	c.Release()
	p.roleMu.Lock()
	r := p.role
	p.roleMu.Unlock()
	if r == nil {
		return errors.New("pgtenant: the pool's role was not learnt")
	}
	citus := p.cfg.citus == CitusOn || p.cfg.citus == CitusAuto && r.citus
	if citus && p.kind == simpleKind {
		return fmt.Errorf("%w: Citus mode (%v) cannot use QueryExecModeSimpleProtocol: the tenant's SET LOCAL would share a query message with other statements, and Citus forwards the whole message to the workers; use QueryExecModeExec behind a pooler, or a prepared mode", ErrInvalidConfig, p.cfg.citus)
	}
	p.chooseSenders(citus)
	return nil
}
