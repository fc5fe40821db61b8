package pgtenant

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tenancykit/tenancy/internal/sqllex"
)

// The statement path and transactions share connections between tenants, so
// a statement sent there must not leave anything on its session, nor change
// the scope it runs in. Each SQL text is classified once (the result is
// cached per Pool) by a small lexer that skips comments, reads quoted and
// U&"..." identifiers and every kind of string constant, and sees through
// EXPLAIN: what it knows would leave state is refused before any I/O. What
// it cannot bound — a call of a function it does not know to be harmless,
// DDL, EXPLAIN, anything but plain SELECT/INSERT/UPDATE/DELETE/MERGE — is
// marked check, and the server-side backstop (backstop.go) verifies what
// the session holds after it. The command tag of every statement is checked
// as well: a connection that reports a session-state command the lexer did
// not expect is closed instead of reused.

// class is what the lexer found in one SQL text.
type class struct {
	// refused names the construct that would leave session state or
	// change the scope, with the safe alternative; empty when the text may
	// run.
	refused, instead string
	// beyond marks a refused construct whose effect outlives the session
	// (role and database settings, roles, default privileges): refused on
	// an Acquired Conn too.
	beyond bool
	// ddl marks DDL refused because the pool does not allow it
	// (Config.AllowDDL): refused on an Acquired Conn too, since the objects
	// it makes or changes outlive the session.
	ddl bool
	// check: the lexer cannot bound what the text does, so the backstop
	// verifies the session after it (see backstop.go).
	check bool
	// tags are the session-looking command tags this text may produce
	// without leaving state behind (SET LOCAL, a cursor without HOLD, a
	// table that is not temporary).
	tags tagBits
	// session marks statements of an Acquired Conn: session state is
	// allowed there (its reset on release clears it), so no tag marks the
	// connection.
	session bool
	// txControl: some statement of the text is transaction control
	// (sqllex.TxControl), which a Conn refuses in Citus mode.
	txControl bool
}

// sessionClass is the class of every statement on an Acquired Conn that the
// lexer lets through.
var sessionClass = &class{session: true}

type tagBits uint8

const (
	tagSet tagBits = 1 << iota
	tagDeclare
	tagCreate
	tagRollback // ROLLBACK TO SAVEPOINT
)

// stateTag reports whether a command tag names a command that can change
// session state, and which allowance in class.tags covers it (0: none).
func stateTag(tag string) (tagBits, bool) {
	switch tag {
	case "SET":
		return tagSet, true
	case "DECLARE CURSOR":
		return tagDeclare, true
	case "CREATE TABLE", "CREATE VIEW", "CREATE SEQUENCE", "CREATE FUNCTION", "CREATE PROCEDURE", "CREATE TYPE",
		"CREATE DOMAIN", "CREATE TABLE AS", "SELECT INTO", "CREATE INDEX", "CREATE OPERATOR", "CREATE AGGREGATE":
		return tagCreate, true
	case "ROLLBACK":
		return tagRollback, true
	case "RESET", "LISTEN", "UNLISTEN", "PREPARE", "EXECUTE", "DEALLOCATE", "DEALLOCATE ALL",
		"DISCARD ALL", "DISCARD TEMP", "DISCARD PLANS", "DISCARD SEQUENCES", "LOAD", "DO",
		"BEGIN", "START TRANSACTION", "COMMIT", "PREPARE TRANSACTION", "COMMIT PREPARED",
		"ROLLBACK PREPARED", "ALTER ROLE", "ALTER DATABASE", "ALTER SYSTEM", "CREATE ROLE", "DROP ROLE",
		"GRANT ROLE", "REVOKE ROLE", "ALTER DEFAULT PRIVILEGES", "SECURITY LABEL":
		return 0, true
	}
	return 0, false
}

// leaves reports whether a statement of class c that completed with tag may
// have left state on its session that c did not account for.
func (c *class) leaves(tag string) bool {
	if c.session {
		return false
	}
	if len(tag) == 0 || tag[0] < 'A' || tag[0] == 'I' || tag[0] == 'U' || tag[0] == 'M' || tag[0] == 'F' {
		// INSERT, UPDATE, MERGE, FETCH, and SELECT below: the common tags,
		// answered without a map or switch on the whole string.
		return false
	}
	if strings.HasPrefix(tag, "SELECT ") {
		return false
	}
	bit, ok := stateTag(tag)
	return ok && (bit == 0 || c.tags&bit == 0)
}

// classCache caches the class of each SQL text for one Pool. It is cleared
// when it passes maxClassCache entries, which bounds it whatever the
// application sends.
type classCache struct {
	m    sync.Map // string -> *class
	n    atomic.Int64
	opts classOpts
}

const maxClassCache = 4096

func (cc *classCache) classify(sql string) *class {
	if v, ok := cc.m.Load(sql); ok {
		return v.(*class)
	}
	c := classify(sql, cc.opts)
	if cc.n.Add(1) > maxClassCache {
		cc.m.Clear()
		cc.n.Store(1)
	}
	cc.m.Store(sql, c)
	return c
}

// classOpts is what classification depends on in a Pool's configuration.
type classOpts struct {
	// setting is the pool's RLS setting, which no statement may write.
	setting string
	// allowDDL: Config.AllowDDL.
	allowDDL bool
}

const useAcquire = "a connection from Pool.Acquire (its session is reset on release)"

// sessionFuncs are functions whose effect or answer belongs to the session.
var sessionFuncs = map[string]string{
	"pg_advisory_lock":            "pg_advisory_xact_lock in a transaction, or " + useAcquire,
	"pg_advisory_lock_shared":     "pg_advisory_xact_lock_shared in a transaction, or " + useAcquire,
	"pg_try_advisory_lock":        "pg_try_advisory_xact_lock in a transaction, or " + useAcquire,
	"pg_try_advisory_lock_shared": "pg_try_advisory_xact_lock_shared in a transaction, or " + useAcquire,
	"pg_advisory_unlock":          useAcquire,
	"pg_advisory_unlock_shared":   useAcquire,
	"pg_advisory_unlock_all":      useAcquire,
	"lastval":                     "INSERT ... RETURNING",
	"currval":                     "INSERT ... RETURNING",
	"setseed":                     useAcquire,
	"dblink_connect":              "dblink with a connection string per call",
	"dblink_connect_u":            "dblink with a connection string per call",
}

// protectedSettings are the settings the pool sets for every statement, or
// whose value the lexer and pgx rely on; no statement on a shared
// connection may write them, not even for its own transaction. The pool's
// RLS setting is added per Pool.
var protectedSettings = map[string]bool{
	"search_path": true, "role": true, "session_authorization": true,
	"standard_conforming_strings": true, "client_encoding": true,
}

const scopeInstead = "nothing: the pool sets the tenant's scope for every statement (Pool.Unscoped for work of no tenant)"

// classify finds what in sql would leave state on the session, change the
// statement's scope, or escape the lexer.
func classify(sql string, o classOpts) *class {
	c := &class{}
	sts := sqllex.Split(sql)
	for _, st := range sts {
		if sqllex.TxControl(st) {
			c.txControl = true
			break
		}
	}
	for _, st := range sts {
		if c.refused = c.statement(st, o); c.refused != "" {
			return c
		}
	}
	return c
}

// temp reports whether t[i] names a temporary schema: pg_temp, or its real
// name pg_temp_N (and pg_toast_temp_N), in any spelling.
func tempSchema(t sqllex.Token) bool {
	if !t.Word || t.Opaque {
		return false
	}
	s := t.Text
	if s == "pg_temp" {
		return true
	}
	for _, prefix := range []string{"pg_temp_", "pg_toast_temp_"} {
		if rest, ok := strings.CutPrefix(s, prefix); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return true
		}
	}
	return false
}

// mentionsTemp reports whether t names an object in a temporary schema
// (a temporary schema followed by ".").
func mentionsTemp(t []sqllex.Token) bool {
	for i := 0; i+1 < len(t); i++ {
		if tempSchema(t[i]) && t[i+1].Punct('.') {
			return true
		}
	}
	return false
}

// stripExplain returns the statement an EXPLAIN runs (or plans), and
// whether there was an EXPLAIN.
func stripExplain(t []sqllex.Token) ([]sqllex.Token, bool) {
	if len(t) == 0 || !t[0].Is("explain") {
		return t, false
	}
	i := 1
	if i < len(t) && t[i].Punct('(') {
		depth := 0
		for ; i < len(t); i++ {
			if t[i].Punct('(') {
				depth++
			} else if t[i].Punct(')') {
				if depth--; depth == 0 {
					i++
					break
				}
			}
		}
	}
	for i < len(t) && (t[i].Is("analyze") || t[i].Is("analyse") || t[i].Is("verbose")) {
		i++
	}
	return t[i:], true
}

// statement classifies one statement and returns the construct it refuses.
func (c *class) statement(t []sqllex.Token, o classOpts) string {
	t, explained := stripExplain(t)
	if explained {
		c.check = true
	}
	if len(t) == 0 {
		return ""
	}
	first := ""
	if t[0].Word && !t[0].Quoted {
		first = t[0].Text
	}
	at := func(i int, w string) bool { return i < len(t) && t[i].Is(w) }
	ddl := func(what string) string {
		if o.allowDDL {
			c.check = true
			c.tags |= tagCreate
			return ""
		}
		c.ddl = true
		c.instead = "DDL as the schema owner (provision, migrate), or Config.AllowDDL"
		return what + " (DDL on a tenant's connection)"
	}
	beyond := func(what string) string {
		c.beyond = true
		c.instead = "the owner or an administrator, outside the tenants' pool"
		return what + " (it outlives the session: every connection of the role or database would inherit it)"
	}
	switch first {
	case "set":
		switch {
		case at(1, "transaction"), at(1, "constraints"):
			c.tags |= tagSet
		case at(1, "local"):
			name := settingName(t[2:])
			if name == "" || protectedSettings[name] || name == o.setting {
				c.instead = scopeInstead
				if name == "" {
					name = "an unrecognised setting"
				}
				return "SET LOCAL " + name
			}
			c.tags |= tagSet
		default:
			c.instead = "SET LOCAL (or set_config(..., true)) in a transaction, or " + useAcquire
			return "SET at session level"
		}
	case "reset":
		c.instead = useAcquire
		return "RESET"
	case "begin", "start", "commit", "end", "abort":
		c.instead = "Pool.Begin and Tx.Commit / Tx.Rollback"
		return strings.ToUpper(first) + " (transaction control in SQL)"
	case "rollback":
		if !at(1, "to") && !(at(2, "to") && (at(1, "work") || at(1, "transaction"))) {
			c.instead = "Tx.Rollback (ROLLBACK TO SAVEPOINT is fine)"
			return "ROLLBACK (transaction control in SQL)"
		}
		c.tags |= tagRollback
	case "savepoint", "release", "fetch", "move", "close", "lock", "table", "values":
	case "declare":
		for i := 1; i < len(t) && !t[i].Is("for"); i++ {
			if t[i].Is("with") && at(i+1, "hold") {
				c.instead = "a cursor without HOLD inside a transaction, or " + useAcquire
				return "DECLARE ... WITH HOLD"
			}
		}
		c.tags |= tagDeclare
	case "listen", "unlisten":
		c.instead = useAcquire
		return strings.ToUpper(first)
	case "prepare", "execute", "deallocate":
		c.instead = "parameters ($1, $2, ...): pgtenant prepares statements itself"
		return strings.ToUpper(first) + " (SQL-level prepared statements)"
	case "discard", "load", "do":
		c.instead = useAcquire
		return strings.ToUpper(first)
	case "create":
		if r := c.create(t, o, ddl, beyond); r != "" {
			return r
		}
	case "alter":
		switch {
		case at(1, "role"), at(1, "user"), at(1, "group"):
			return beyond("ALTER ROLE")
		case at(1, "database"):
			return beyond("ALTER DATABASE")
		case at(1, "system"):
			return beyond("ALTER SYSTEM")
		case at(1, "default") && at(2, "privileges"):
			return beyond("ALTER DEFAULT PRIVILEGES")
		}
		if mentionsTemp(t) {
			c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP inside a transaction, or " + useAcquire
			return "ALTER of a temporary object"
		}
		if r := ddl("ALTER"); r != "" {
			return r
		}
	case "drop":
		switch {
		case at(1, "role"), at(1, "user"), at(1, "group"):
			return beyond("DROP ROLE")
		case at(1, "owned"):
			return beyond("DROP OWNED")
		}
		if r := ddl("DROP"); r != "" {
			return r
		}
	case "reassign":
		return beyond("REASSIGN OWNED")
	case "security":
		return beyond("SECURITY LABEL")
	case "grant", "revoke":
		on := false
		for _, tk := range t[1:] {
			if tk.Is("on") {
				on = true
				break
			}
			if tk.Is("to") || tk.Is("from") {
				break
			}
		}
		if !on {
			return beyond(strings.ToUpper(first) + " of a role")
		}
		if r := ddl(strings.ToUpper(first)); r != "" {
			return r
		}
	case "comment", "import":
		if r := ddl(strings.ToUpper(first)); r != "" {
			return r
		}
	case "select", "with", "insert", "update", "delete", "merge":
		if r := c.dml(t, o, ddl); r != "" {
			return r
		}
	default:
		// CALL, COPY, TRUNCATE, VACUUM, ANALYZE, REFRESH, a word the lexer
		// does not know: allowed, and verified by the backstop.
		c.check = true
	}
	return c.calls(t, o)
}

// create classifies a CREATE statement.
func (c *class) create(t []sqllex.Token, o classOpts, ddl, beyond func(string) string) string {
	temp := false
	i := 1
	for ; i < len(t); i++ {
		switch {
		case t[i].Is("temp"), t[i].Is("temporary"):
			temp = true
		case t[i].Is("or"), t[i].Is("replace"), t[i].Is("global"), t[i].Is("local"), t[i].Is("unlogged"), t[i].Is("recursive"),
			t[i].Is("trusted"), t[i].Is("procedural"), t[i].Is("unique"), t[i].Is("materialized"), t[i].Is("constraint"), t[i].Is("default"):
		default:
			goto kind
		}
	}
kind:
	if i < len(t) && (t[i].Is("role") || t[i].Is("user") && !(i+1 < len(t) && t[i+1].Is("mapping")) || t[i].Is("group")) {
		return beyond("CREATE ROLE")
	}
	temp = temp || mentionsTemp(t)
	if temp {
		if i < len(t) && t[i].Is("table") && onCommitDrop(t) {
			c.tags |= tagCreate
			return ""
		}
		c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP inside a transaction, or " + useAcquire
		return "a temporary object that outlives the transaction"
	}
	kind := "CREATE"
	if i < len(t) && t[i].Word {
		kind += " " + strings.ToUpper(t[i].Text)
	}
	return ddl(kind)
}

// dml classifies SELECT, WITH, INSERT, UPDATE, DELETE and MERGE.
func (c *class) dml(t []sqllex.Token, o classOpts, ddl func(string) string) string {
	settings, writes := false, false
	for i, tk := range t {
		switch {
		case tk.Name("pg_settings"):
			settings = true
		case tk.Is("update"), tk.Is("insert"), tk.Is("delete"), tk.Is("merge"):
			// "FOR UPDATE" locks rows; it writes nothing.
			if !(tk.Is("update") && i > 0 && (t[i-1].Is("for") || t[i-1].Is("no") || t[i-1].Is("key"))) {
				writes = true
			}
		case tk.Is("into") && i+1 < len(t) && !(i > 0 && (t[i-1].Is("insert") || t[i-1].Is("merge"))):
			// SELECT ... INTO: CREATE TABLE AS.
			j := i + 1
			temp := false
			for ; j < len(t); j++ {
				if t[j].Is("temp") || t[j].Is("temporary") {
					temp = true
				} else if !t[j].Is("local") && !t[j].Is("global") && !t[j].Is("unlogged") && !t[j].Is("table") {
					break
				}
			}
			if temp || j+1 < len(t) && tempSchema(t[j]) && t[j+1].Punct('.') {
				c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP AS inside a transaction, or " + useAcquire
				return "SELECT ... INTO a temporary table"
			}
			if r := ddl("SELECT ... INTO"); r != "" {
				return r
			}
		}
	}
	if settings && writes {
		c.instead = "SET LOCAL (or set_config(..., true)) in a transaction, or " + useAcquire
		return "a write of pg_settings (a session SET)"
	}
	return ""
}

// settingName returns the setting a SET LOCAL names from t (what follows
// LOCAL), lowercased; "" when the lexer cannot tell.
func settingName(t []sqllex.Token) string {
	switch {
	case len(t) == 0:
		return ""
	case t[0].Is("schema"):
		return "search_path"
	case t[0].Is("names"):
		return "client_encoding"
	case t[0].Is("session") && len(t) > 1 && t[1].Is("authorization"):
		return "session_authorization"
	case t[0].Is("time") && len(t) > 1 && t[1].Is("zone"):
		return "timezone"
	}
	var b strings.Builder
	for i, tk := range t {
		if tk.Is("to") || tk.Punct('=') {
			break
		}
		switch {
		case tk.Word && !tk.Opaque && (i%2 == 0):
			b.WriteString(strings.ToLower(tk.Text))
		case tk.Punct('.') && i%2 == 1:
			b.WriteByte('.')
		default:
			return ""
		}
	}
	return b.String()
}

// calls looks at every function call in t: a session function is refused,
// set_config is allowed only as set_config('<a setting the pool does not
// own>', value, true), and a call of anything the lexer does not know to be
// harmless marks the text for the backstop.
func (c *class) calls(t []sqllex.Token, o classOpts) string {
	for i, tk := range t {
		if tk.Opaque {
			c.check = true
		}
		if !tk.Word {
			continue
		}
		var open bool
		switch {
		case i+1 < len(t) && t[i+1].Punct('('):
			open = true
		case i >= 1 && t[i-1].Punct('.') && (i < 2 || !t[i-2].Word):
			// (expr).f and $1.f call f(expr): attribute notation.
		default:
			continue
		}
		name := tk.Text
		if tk.Opaque {
			c.check = true
			continue
		}
		if instead, ok := sessionFuncs[name]; ok {
			c.instead = instead
			return name + "()"
		}
		if name == "set_config" {
			if !open {
				c.instead = "set_config(name, value, true)"
				return "set_config in attribute notation"
			}
			if r := c.setConfig(t[i+1:], o); r != "" {
				return r
			}
			continue
		}
		if !open {
			c.check = true
			continue
		}
		qualified := i >= 2 && t[i-1].Punct('.') && t[i-2].Word
		if qualified && !t[i-2].Name("pg_catalog") {
			c.check = true
			continue
		}
		prev := sqllex.Token{}
		if i > 0 {
			prev = t[i-1]
		}
		switch {
		case notCalls[name] && !tk.Quoted:
		case safeFuncs[name]:
		case prev.Is("into") || prev.Is("as") || prev.Is("table") || prev.Is("only") || prev.Punct(':'):
			// INSERT INTO t (columns), AS alias (columns), CAST(x AS
			// numeric(10, 2)), x::varchar(20).
		default:
			c.check = true
		}
	}
	return ""
}

// setConfig checks the argument list of a set_config call that t opens (t[0]
// is "(").
func (c *class) setConfig(t []sqllex.Token, o classOpts) string {
	args := callArgs(t)
	if len(args) != 3 {
		c.instead = "set_config('<setting>', value, true)"
		return "set_config with an argument list the lexer cannot read"
	}
	if len(args[0]) != 1 || !args[0][0].Str || args[0][0].Opaque {
		c.instead = "set_config('<setting>', value, true) with the setting's name as a string constant"
		return "set_config of a setting named by an expression"
	}
	if name := strings.ToLower(args[0][0].Text); protectedSettings[name] || name == o.setting {
		c.instead = scopeInstead
		return "set_config of " + name
	}
	if len(args[2]) != 1 || !args[2][0].Is("true") {
		c.instead = "set_config(name, value, true) inside a transaction, or " + useAcquire
		return "set_config(..., false)"
	}
	c.tags |= tagSet
	return ""
}

// callArgs splits the argument list that t opens (t[0] is "(") at its
// top-level commas; nil when it does not close.
func callArgs(t []sqllex.Token) [][]sqllex.Token {
	depth := 0
	var args [][]sqllex.Token
	var cur []sqllex.Token
	for _, tk := range t {
		switch {
		case tk.Punct('(') || tk.Punct('['):
			depth++
			if depth == 1 {
				continue
			}
		case tk.Punct(')') || tk.Punct(']'):
			depth--
			if depth == 0 {
				return append(args, cur)
			}
		case tk.Punct(',') && depth == 1:
			args = append(args, cur)
			cur = nil
			continue
		}
		cur = append(cur, tk)
	}
	return nil
}

// onCommitDrop reports whether the statement says ON COMMIT DROP.
func onCommitDrop(t []sqllex.Token) bool {
	for i := 0; i+2 < len(t); i++ {
		if t[i].Is("on") && t[i+1].Is("commit") && t[i+2].Is("drop") {
			return true
		}
	}
	return false
}

// notCalls are keywords that an opening parenthesis may follow without a
// function being called (or that call a built-in of the SQL syntax).
var notCalls = setOf(`in exists any some all array row values cast coalesce nullif greatest least extract position
	substring overlay trim over filter within using on conflict as from join lateral where and or not when then else
	select with by group having limit offset returning set into table interval numeric decimal varchar char character
	varying bit time timestamp float precision is distinct between like ilike similar case end rows grouping cube rollup
	sets only system bernoulli recursive materialized default check unique primary key references foreign exclude include
	partition for of do update nothing union intersect except return ordinality first next fetch window range groups
	xmlelement xmlforest xmlconcat xmlparse xmlpi xmlroot xmlserialize xmlexists xmlattributes xmltable collate
	normalize treat zone tablesample escape asc desc nulls last`)

// safeFuncs are built-in functions that change nothing in the session (and
// whose answer does not depend on what another tenant did on it): a
// statement that calls only these needs no backstop.
var safeFuncs = setOf(`count sum avg min max every bool_and bool_or bit_and bit_or string_agg array_agg json_agg jsonb_agg
	json_object_agg jsonb_object_agg stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp
	percentile_cont percentile_disc mode row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value
	last_value nth_value lower upper length char_length character_length octet_length bit_length substr btrim ltrim
	rtrim lpad rpad replace concat concat_ws format left right strpos split_part repeat reverse initcap translate
	starts_with regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table regexp_like
	regexp_count regexp_substr regexp_instr quote_ident quote_literal quote_nullable to_hex md5 sha224 sha256 sha384
	sha512 encode decode convert_from convert_to ascii chr now current_timestamp current_date current_time localtime
	localtimestamp clock_timestamp statement_timestamp transaction_timestamp timeofday date_trunc date_part date_bin
	age make_date make_time make_timestamp make_timestamptz make_interval justify_days justify_hours justify_interval
	to_char to_date to_timestamp to_number isfinite abs round ceil ceiling floor trunc mod power pow sqrt cbrt exp ln
	log log10 sign div pi degrees radians sin cos tan asin acos atan atan2 width_bucket random gen_random_uuid
	unnest generate_series generate_subscripts array_length array_lower array_upper array_ndims array_dims
	array_position array_positions array_remove array_replace array_append array_prepend array_cat array_to_string
	string_to_array cardinality trim_array array_to_json row_to_json to_json to_jsonb json_build_object
	jsonb_build_object json_build_array jsonb_build_array json_object jsonb_object jsonb_set jsonb_set_lax jsonb_insert
	jsonb_strip_nulls json_strip_nulls jsonb_pretty jsonb_typeof json_typeof jsonb_array_length json_array_length
	jsonb_array_elements json_array_elements jsonb_array_elements_text json_array_elements_text jsonb_each json_each
	jsonb_each_text json_each_text jsonb_object_keys json_object_keys jsonb_extract_path json_extract_path
	jsonb_extract_path_text json_extract_path_text jsonb_path_query jsonb_path_query_array jsonb_path_query_first
	jsonb_path_exists jsonb_path_match jsonb_to_record json_to_record jsonb_to_recordset json_to_recordset
	jsonb_populate_record json_populate_record to_tsvector to_tsquery plainto_tsquery phraseto_tsquery
	websearch_to_tsquery ts_rank ts_rank_cd ts_headline setweight numnonnulls num_nulls num_nonnulls
	current_setting current_schema current_schemas current_database current_user session_user current_role user
	version pg_typeof format_type host hostmask masklen netmask network broadcast family inet_same_family
	lower_inf upper_inf isempty range_merge int4range int8range numrange tsrange tstzrange daterange
	uuid_in text_pattern_ops bool int int2 int4 int8 integer smallint bigint real text uuid date jsonb json inet cidr
	bytea boolean timestamptz timetz oid regclass gen_salt crypt digest hmac`)

func setOf(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}
