#!/usr/bin/env bash
# build.sh — build the ars Debian package with dpkg-deb (no other tool).
#
#   deploy/deb/build.sh ARS_BINARY VERSION OUTDIR
#
# ARS_BINARY is a linux build of cmd/ars for the package's architecture
# (`make deb` builds a static one); VERSION is the build's version
# (`git describe`: v0.1.0-12-gabc1234 becomes 0.1.0+12.gabc1234). Writes
# OUTDIR/ars_VERSION_ARCH.deb and prints its path.
#
# The package installs /usr/bin/ars, the systemd unit ars.service (not
# enabled: the node needs /etc/ars/agent.yaml and its certificates first;
# see docs/operations.md), the system user and group ars, /etc/ars (0750
# root:ars) and /var/lib/ars (0700 ars:ars), the example configurations
# under /usr/share/doc/ars/examples, and the bash and zsh completions.
set -euo pipefail

[[ $# -eq 3 ]] || { echo "usage: $0 ARS_BINARY VERSION OUTDIR" >&2; exit 2; }
bin="$1" version="$2" out="$3"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[[ -x "$bin" ]] || { echo "build.sh: $bin is not an executable" >&2; exit 1; }

# A Debian version starts with a digit and has no hyphen outside the
# revision: v0.1.0-12-gabc1234-dirty -> 0.1.0+12.gabc1234.dirty.
deb_version="${version#v}"
deb_version="${deb_version//-/.}"
deb_version="$(sed -E 's/^([0-9]+\.[0-9]+\.[0-9]+)\./\1+/' <<<"$deb_version")"
[[ "$deb_version" =~ ^[0-9] ]] || deb_version="0.0.0+$deb_version"
arch="$(dpkg --print-architecture)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
install -D -m 0755 "$bin" "$root/usr/bin/ars"
# The unit of deploy/, with the packaged binary's path and without the
# by-hand installation notes.
sed -e 's|/usr/local/bin/ars|/usr/bin/ars|g' -e '/^#   /d' -e '/^# systemd unit/,/^#$/{/^#$/d}' \
	"$ROOT/deploy/ars.service" > "$tmp/ars.service"
install -D -m 0644 "$tmp/ars.service" "$root/lib/systemd/system/ars.service"
install -d -m 0755 "$root/usr/share/doc/ars/examples"
install -m 0644 "$ROOT/deploy/examples/service-dns.yaml" "$ROOT"/deploy/examples/three-node/n*.yaml "$root/usr/share/doc/ars/examples/"
install -m 0644 "$ROOT/LICENSE" "$root/usr/share/doc/ars/copyright"
install -d -m 0755 "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions"
"$bin" completion bash > "$root/usr/share/bash-completion/completions/ars"
"$bin" completion zsh > "$root/usr/share/zsh/vendor-completions/_ars"

install -d -m 0755 "$root/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: ars
Version: $deb_version
Architecture: $arch
Maintainer: ars developers <ars@localhost>
Installed-Size: $size
Depends: adduser
Suggests: bash-completion
Section: net
Priority: optional
Description: attack-resilient service failover controller
 ars keeps a network service (DNS first) up under attack: it serves it from
 one of several diverse replicas (different server implementations on
 different platforms) and moves it within a fraction of a second to a
 replica the attack does not work on. Three ars nodes elect a Raft leader
 that probes the service, drives vCenter and Docker, and switches.
CONTROL
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
	if ! getent group ars >/dev/null; then
		addgroup --system --quiet ars
	fi
	if ! getent passwd ars >/dev/null; then
		adduser --system --quiet --ingroup ars --home /var/lib/ars --no-create-home \
			--shell /usr/sbin/nologin --gecos "ars controller node" ars
	fi
	install -d -m 0750 -o root -g ars /etc/ars
	install -d -m 0700 -o ars -g ars /var/lib/ars
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
fi
exit 0
POSTINST
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
# The node's data (/var/lib/ars: its Raft log and snapshots) and its
# configuration (/etc/ars: certificates, keys, tokens) are kept on purge
# too: removing them by accident would cost the cluster a voter's state
# and the node's secrets. Delete them by hand.
exit 0
POSTRM
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop ars.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm" "$root/DEBIAN/prerm"

mkdir -p "$out"
deb="$out/ars_${deb_version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
