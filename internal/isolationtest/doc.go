// Package isolationtest holds the system suites that try to break tenant
// isolation the way a security reviewer would: a matrix of statements ×
// identities against real PostgreSQL through pgtenant, hostile names, and
// attacks on the Redis namespace. It has no code of its own; see the tests.
package isolationtest
