// Package citustest holds the integration tests that run Tenancy on a Citus
// cluster: provisioning distributed tenant schemas, pgtenant's statements,
// transactions, batches and sessions reaching the workers with the tenant,
// migrations, and moving a tenant between workers under load. They run when
// TENANCY_CITUS_URL names the admin URL of a coordinator with at least one
// worker, and are skipped otherwise (there is no Citus package on Debian, so
// CI cannot run them).
//
// To run them, build Citus from its public source against Debian's
// PostgreSQL 15, out of the tree of this project:
//
//	git clone https://github.com/citusdata/citus && cd citus && git checkout v13.2.2
//	apt-get install postgresql-server-dev-15 libkrb5-dev liblz4-dev libzstd-dev \
//	    libcurl4-openssl-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev
//	# PostgreSQL 15.20 exports have_createdb_privilege, which clashes with the
//	# PG15 compatibility copy in src/include/pg_version_compat.h: delete that
//	# static inline function and include "commands/dbcommands.h" instead.
//	./configure --without-libcurl && make -j2 && make install
//
// then start a coordinator and two workers on loopback ports, each with
// initdb, shared_preload_libraries = 'citus' and wal_level = logical, run
// CREATE EXTENSION citus in each, and on the coordinator
// citus_set_coordinator_host('127.0.0.1', 9700) and
// citus_add_node('127.0.0.1', port) for each worker:
//
//	TENANCY_CITUS_URL=postgres://postgres@127.0.0.1:9700/postgres go test ./internal/citustest/
//
// BenchmarkCitus and BenchmarkCitusProvision compare the cluster with a plain
// PostgreSQL (TENANCY_PG_ADMIN_URL): give that one the same settings as the
// nodes (BENCHMARKS.md, "Citus", shows how the figures were made).
package citustest
