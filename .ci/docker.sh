# Sourced by .ci/run: a private Docker engine and local service images, so the
# tests' Docker path (internal/testenv) runs in CI without any registry.
#
# docker_up installs docker.io and debootstrap when absent, starts dockerd with
# no bridge, no iptables and the vfs driver on a socket of its own, and builds
# the image $TENANCY_CI_IMAGE (PostgreSQL 15 and Redis from Debian's packages
# on a minimal debootstrap of the machine's Debian release) unless the engine
# already has it: the engine's data root persists, so a rerun skips the build.
# docker_down removes what the tests left and stops that dockerd by its PID.
# Containers use the host's network, each server on a loopback port testenv
# picks; nothing is published and no registry is contacted.

TENANCY_CI_DOCKER_ROOT=${TENANCY_CI_DOCKER_ROOT:-/var/lib/tenancy-ci-docker}
TENANCY_CI_DOCKER_RUN=/run/tenancy-ci-docker
TENANCY_CI_IMAGE=tenancy-ci/services:bookworm-2
export DOCKER_HOST="unix://$TENANCY_CI_DOCKER_RUN/docker.sock"

# The Debian docker client, matching the Debian engine (another client may be
# first on PATH).
dkr() { /usr/bin/docker "$@"; }

docker_up() {
	local need=()
	command -v dockerd >/dev/null || need+=(docker.io)
	command -v debootstrap >/dev/null || need+=(debootstrap)
	if [ ${#need[@]} -gt 0 ]; then
		log "installing ${need[*]}"
		apt_install "${need[@]}"
	fi
	mkdir -p "$TENANCY_CI_DOCKER_ROOT" "$TENANCY_CI_DOCKER_RUN"
	if ! dkr info >/dev/null 2>&1; then
		log "starting a private dockerd ($DOCKER_HOST)"
		dockerd --bridge=none --iptables=false --ip6tables=false --storage-driver=vfs \
			--data-root "$TENANCY_CI_DOCKER_ROOT" --exec-root "$TENANCY_CI_DOCKER_RUN/exec" \
			--pidfile "$TENANCY_CI_DOCKER_RUN/dockerd.pid" -H "$DOCKER_HOST" \
			>"$TENANCY_CI_DOCKER_RUN/dockerd.log" 2>&1 &
		for _ in $(seq 1 60); do
			dkr info >/dev/null 2>&1 && break
			sleep 0.5
		done
		if ! dkr info >/dev/null 2>&1; then
			tail -n 30 "$TENANCY_CI_DOCKER_RUN/dockerd.log" >&2
			echo "dockerd did not answer on $DOCKER_HOST" >&2
			exit 1
		fi
		TENANCY_CI_DOCKERD_STARTED=1
	fi
	if dkr image inspect "$TENANCY_CI_IMAGE" >/dev/null 2>&1; then
		log "image $TENANCY_CI_IMAGE: cached"
	else
		build_services_image
	fi
}

build_services_image() {
	local release root mirror
	release=$(. /etc/os-release && echo "$VERSION_CODENAME")
	mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	mirror=${mirror:-http://deb.debian.org/debian}
	root=$(mktemp -d /var/tmp/tenancy-ci-rootfs.XXXXXX)
	chmod 755 "$root" # the image's /, which mktemp made 0700
	log "building $TENANCY_CI_IMAGE: debootstrap $release from $mirror"
	debootstrap --variant=minbase "$release" "$root" "$mirror" >"$root.log" 2>&1 || {
		tail -n 30 "$root.log" >&2
		exit 1
	}
	# No service starts inside the chroot, and PostgreSQL makes no cluster:
	# the container's entrypoint makes one at start.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod +x "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common/createcluster.d"
	echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.d/tenancy-ci.conf"
	chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		postgresql-15 redis-server >>"$root.log" 2>&1 || {
		tail -n 30 "$root.log" >&2
		exit 1
	}
	chroot "$root" apt-get clean
	rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d"
	cat >"$root/usr/local/bin/docker-entrypoint.sh" <<-'EOF'
		#!/bin/sh
		# The official postgres and redis images' contract: "postgres [args]"
		# with POSTGRES_PASSWORD / POSTGRES_USER / PGDATA, "redis-server [args]".
		set -e
		case "$1" in
		postgres)
			shift
			mkdir -p "$PGDATA" /run/postgresql
			chown postgres:postgres "$PGDATA" /run/postgresql
			chmod 700 "$PGDATA"
			if [ ! -s "$PGDATA/PG_VERSION" ]; then
				printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >/run/postgresql/pw
				chown postgres /run/postgresql/pw
				setpriv --reuid=postgres --regid=postgres --init-groups \
					/usr/lib/postgresql/15/bin/initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" \
					--pwfile=/run/postgresql/pw --auth-local=trust --auth-host=scram-sha-256 \
					--encoding=UTF8 --locale=C.UTF-8 >/dev/null
				rm -f /run/postgresql/pw
			fi
			exec setpriv --reuid=postgres --regid=postgres --init-groups /usr/lib/postgresql/15/bin/postgres -D "$PGDATA" "$@"
			;;
		redis-server)
			shift
			exec setpriv --reuid=redis --regid=redis --init-groups /usr/bin/redis-server "$@"
			;;
		esac
		exec "$@"
	EOF
	chmod +x "$root/usr/local/bin/docker-entrypoint.sh"
	tar -C "$root" -c . | dkr import \
		--change 'ENV PGDATA=/var/lib/postgresql/data' \
		--change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
		--change 'CMD ["postgres"]' \
		- "$TENANCY_CI_IMAGE" >/dev/null
	rm -rf "$root" "$root.log"
	# Earlier versions of the image only take space now.
	dkr images tenancy-ci/services --format '{{.Repository}}:{{.Tag}}' | grep -vx "$TENANCY_CI_IMAGE" |
		xargs -r /usr/bin/docker rmi >/dev/null 2>&1 || true
	log "image $TENANCY_CI_IMAGE: built"
}

# Containers of the test run (label tenancykit.test=1).
test_containers() { dkr ps -aq --filter label=tenancykit.test=1; }

docker_down() {
	local left
	left=$(test_containers 2>/dev/null || true)
	if [ -n "$left" ]; then
		# shellcheck disable=SC2086
		dkr rm -f $left >/dev/null 2>&1 || true
	fi
	if [ -n "${TENANCY_CI_DOCKERD_STARTED:-}" ] && [ -f "$TENANCY_CI_DOCKER_RUN/dockerd.pid" ]; then
		local pid
		pid=$(cat "$TENANCY_CI_DOCKER_RUN/dockerd.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 40); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		log "dockerd (PID $pid) stopped"
	fi
}
