#!/usr/bin/env bash
# build.sh — build the ars lab's container images into the local Docker
# engine, without any registry. Idempotent: an image whose content tag
# exists already is not built again (only :latest is pointed at it).
#
#   images/build.sh                 # every image
#   images/build.sh dnsd unbound    # some of them
#   FORCE=1 images/build.sh bind9   # rebuild even if the tag exists (e.g. for Debian security updates)
#   VERSION=v0.2.0 images/build.sh ars  # the version the static binaries report (make images passes git describe)
#
# Images (tagged <repository>:<content hash> and <repository>:latest):
#   nethelper      ars/nethelper: cmd/ars-nethelper, the Docker driver's address
#                  helper (controller/docker), static, alone in the image (~2 MB);
#                  every engine with container replicas needs it
#   dnsd           ars-lab/dnsd: test/dnsd, a static Go DNS responder, alone in the image (~4 MB)
#   ars            ars/ars: the controller node, cmd/ars built static, alone in the
#                  image (no shell); ENTRYPOINT ["/ars"], CMD ["agent", "-config",
#                  "/etc/ars/agent.yaml"] (mount the configuration and a data volume)
#   debian         ars-lab/debian: minimal Debian with adduser, a clean system for the
#                  package test (deploy/deb); nothing of ars in it
# and ars-lab/<name> for the DNS servers:
#   bind9          BIND 9 from Debian, authoritative for lab.internal
#   unbound        Unbound from Debian, lab.internal as a local zone
#   knot-resolver  Knot Resolver from Debian, www.lab.internal from hints
#   pdns-recursor  PowerDNS Recursor from Debian, lab.internal as an auth zone
# Every server answers www.lab.internal. A 192.0.2.10 on every address of
# the container (the service address is connected after it starts). Their
# configuration is in images/<name>/ and lands in /etc/ars/ of the image.
#
# The Debian images are made with mmdebstrap (installed with apt-get if
# missing): --variant=essential plus the server package and its
# dependencies, merged /usr, no documentation, man pages or locales, no apt. The content
# hash covers the suite, the package list, the command, the files under
# images/<name>/ and this script; it does not cover the Debian package
# versions (use FORCE=1 to pick up updates).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
GO="${GO:-go}"
ALL=(nethelper dnsd ars debian bind9 unbound knot-resolver pdns-recursor)

log() { printf '== %s\n' "$*" >&2; }

# tag_exists REF
tag_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# finish NAME TAG: point :latest of TAG's repository at TAG.
finish() {
	docker tag "$2" "${2%:*}:latest"
	log "$1: $2 ($(docker image inspect -f '{{.Size}}' "$2" | awk '{printf "%.1f MB", $1/1e6}'))"
}

# build_static NAME PACKAGE BINARY REPOSITORY MESSAGE CHANGE...: a static Go
# binary of this module alone in an image, tagged by the binary's hash.
build_static() {
	local name="$1" pkg="$2" bin="$3" repo="$4" msg="$5"
	shift 5
	local tmp; tmp="$(mktemp -d)"
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	(cd "$ROOT" && CGO_ENABLED=0 GOOS=linux "$GO" build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION:-dev}" -o "$tmp/$bin" "$pkg")
	local hash; hash="$(sha256sum "$tmp/$bin" | cut -c1-12)"
	local tag="$repo:$hash"
	if [[ -z "${FORCE:-}" ]] && tag_exists "$tag"; then
		log "$name: $tag exists"
	else
		tar -C "$tmp" --owner=0 --group=0 --mtime=@0 -cf "$tmp/rootfs.tar" "$bin"
		local changes=()
		for c in "$@"; do changes+=(-c "$c"); done
		docker import -m "$msg" "${changes[@]}" "$tmp/rootfs.tar" "$tag" >/dev/null
	fi
	finish "$name" "$tag"
}

# build_debian NAME PACKAGES CMD_JSON
build_debian() {
	local name="$1" pkgs="$2" cmd="$3"
	local dir="$ROOT/images/$name"
	[[ -d "$dir" ]] || { echo "build.sh: no configuration directory $dir" >&2; exit 1; }
	local hash
	hash="$( {
		printf 'suite=%s\npackages=%s\ncmd=%s\n' "$SUITE" "$pkgs" "$cmd"
		sha256sum "$ROOT/images/build.sh" | cut -d' ' -f1
		(cd "$dir" && find . -type f | LC_ALL=C sort | xargs sha256sum)
	} | sha256sum | cut -c1-12)"
	local tag="ars-lab/$name:$hash"
	if [[ -z "${FORCE:-}" ]] && tag_exists "$tag"; then
		log "$name: $tag exists"
		finish "$name" "$tag"
		return
	fi
	if ! command -v mmdebstrap >/dev/null; then
		log "installing mmdebstrap"
		apt-get install -y -q mmdebstrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q mmdebstrap >/dev/null; }
	fi
	local tmp; tmp="$(mktemp -d)"
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	log "$name: building $tag ($SUITE: $pkgs)"
	local start=$SECONDS
	# The merged-usr hook makes /usr merged up front and installs
	# usr-is-merged; without it apt satisfies init-system-helpers'
	# "usrmerge | usr-is-merged" with usrmerge, which drags in ~47 MB of perl.
	mmdebstrap --quiet --variant=essential --include="$pkgs" \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		--customize-hook='mkdir -p "$1/etc/ars"' \
		--customize-hook="sync-in '$dir' /etc/ars" \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log' \
		"$SUITE" "$tmp/rootfs.tar" "$MIRROR"
	docker import -m "ars lab $name ($SUITE)" -c "CMD $cmd" "$tmp/rootfs.tar" "$tag" >/dev/null
	log "$name: built in $((SECONDS - start)) s"
	finish "$name" "$tag"
}

build() {
	case "$1" in
	dnsd) build_static dnsd ./test/dnsd dnsd ars-lab/dnsd "ars test DNS responder" 'ENTRYPOINT ["/dnsd"]' ;;
	nethelper) build_static nethelper ./cmd/ars-nethelper ars-nethelper ars/nethelper "ars address helper" \
		'ENTRYPOINT ["/ars-nethelper"]' 'CMD ["serve"]' ;;
	ars) build_static ars ./cmd/ars ars ars/ars "ars controller node" \
		'ENTRYPOINT ["/ars"]' 'CMD ["agent", "-config", "/etc/ars/agent.yaml"]' ;;
	debian) build_debian debian adduser '["/bin/sh"]' ;;
	bind9) build_debian bind9 bind9 '["/usr/sbin/named", "-g", "-c", "/etc/ars/named.conf"]' ;;
	unbound) build_debian unbound unbound '["/usr/sbin/unbound", "-d", "-c", "/etc/ars/unbound.conf"]' ;;
	knot-resolver) build_debian knot-resolver knot-resolver '["/usr/sbin/kresd", "-n", "-c", "/etc/ars/kresd.conf", "/var/lib/knot-resolver"]' ;;
	pdns-recursor) build_debian pdns-recursor pdns-recursor '["/usr/sbin/pdns_recursor", "--config-dir=/etc/ars"]' ;;
	*) echo "build.sh: unknown image $1 (known: ${ALL[*]})" >&2; exit 2 ;;
	esac
}

command -v docker >/dev/null || { echo "build.sh: the docker CLI is needed" >&2; exit 1; }
docker version >/dev/null || { echo "build.sh: the Docker engine does not answer" >&2; exit 1; }
if [[ $# -eq 0 ]]; then set -- "${ALL[@]}"; fi
for img in "$@"; do build "$img"; done
