package provision

import "github.com/tenancykit/tenancy/internal/rls"

// PolicyName is the name of the row level security policy Create puts on
// every tenant table.
const PolicyName = rls.PolicyName

// secureTableSQL and grantSQL are the SQL Create runs; they live in
// internal/rls so migrate confines new tables the same way.
var (
	secureTableSQL = rls.TableSQL
	grantSQL       = rls.GrantSQL
	qualified      = rls.Qualified
)
