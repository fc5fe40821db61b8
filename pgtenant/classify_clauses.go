package pgtenant

import (
	"strings"

	"github.com/tenancykit/tenancy/internal/sqllex"
)

// The parts of a statement the classifier looks into: CREATE, the DML
// statements, the setting a SET names, and the function calls of any
// statement (which are known to be safe, which set a setting).

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
