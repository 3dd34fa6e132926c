#!/bin/sh
# offline-venv.sh VENV PYPROJECT
#
# Fills a virtualenv from Debian's python3-* packages, for the offline
# profile's backend builder (no PyPI, no pip in the base image). The result
# has the same /opt/venv shape the upstream profile gets from uv, so the
# runtime stage copies it the same way.
#
# Runs as root in the Debian "python" base: python3 + apt, no pip.
# /var/cache/apt and /var/lib/apt/lists are persistent cache mounts: never
# cleaned here, so a rebuild downloads nothing it already has.
set -eu
# pipefail is POSIX since 2024 and in dash 0.5.12; keep going without it on
# older shells (every pipeline below also checks its output).
# shellcheck disable=SC3040
(set -o pipefail) 2>/dev/null && set -o pipefail

die() { printf 'offline-venv.sh: ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf 'offline-venv.sh: %s\n' "$*" >&2; }

[ $# -eq 2 ] || die "usage: offline-venv.sh VENV PYPROJECT (e.g. /opt/venv /src/pyproject.toml)"
VENV=$1
PYPROJECT=$2
[ -f "$PYPROJECT" ] || die "$PYPROJECT not found; copy backend/pyproject.toml in before running this"
command -v apt-get >/dev/null || die "apt-get not found: this script runs in the Debian python base (scripts/make-base-images.sh)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: the base image must be Debian"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "$PY not found in the base image"

# PyPI distribution name -> Debian package. Only what pyproject.toml names
# directly; apt resolves the rest (starlette's anyio, pydantic's
# typing-extensions, ...). Names are normalised (lower case, _ and . -> -).
debian_package() {
	case $1 in
	fastapi) echo python3-fastapi ;;
	starlette) echo python3-starlette ;;
	uvicorn) echo python3-uvicorn ;;
	websockets) echo python3-websockets ;;
	asyncpg) echo python3-asyncpg ;;
	pydantic) echo python3-pydantic ;;
	*) return 1 ;;
	esac
}

# Dedicated archive dir inside the cache mount: Debian/Docker images ship an
# apt config (docker-clean) that deletes /var/cache/apt/archives/*.deb.
DEBS=/var/cache/apt/kidney-offline-venv
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT INT TERM
mkdir -p "$DEBS/partial"
APT_OPTS="-o Dir::Cache::archives=$DEBS -o APT::Keep-Downloaded-Packages=true -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300 -o APT::Sandbox::User=root"

deps=$("$PY" - "$PYPROJECT" <<'EOF'
import re, sys, tomllib
with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f).get("project", {}).get("dependencies", [])
for d in deps:
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", d)
    if not name:
        sys.exit(f"cannot parse dependency {d!r}")
    print(re.sub(r"[-_.]+", "-", name.group(1)).lower())
EOF
) || die "could not read [project].dependencies from $PYPROJECT"
[ -n "$deps" ] || die "$PYPROJECT lists no [project].dependencies"

pkgs=
for d in $deps; do
	p=$(debian_package "$d") ||
		die "dependency '$d' in $PYPROJECT has no Debian package mapping; add it to debian_package() in scripts/offline-venv.sh (find the package with: apt-cache search --names-only python3-$d)"
	pkgs="$pkgs $p"
done
# shellcheck disable=SC2086
log "pyproject dependencies:$(printf ' %s' $deps)"
log "Debian packages:$pkgs"

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get $APT_OPTS update -qq || die "apt-get update failed: the build step needs the Debian mirror in /etc/apt/sources.list(.d)"

# The exact set apt would install (name + version), then download it. What
# the base image already has is not in the plan and is handled below.
# shellcheck disable=SC2086
plan=$(apt-get $APT_OPTS install -s -y --no-install-recommends $pkgs | awk '$1 == "Inst" { v = $3; if (v ~ /^\[/) v = $4; gsub(/[()]/, "", v); print $2 "=" v }') ||
	die "apt cannot resolve:$pkgs"
# shellcheck disable=SC2086
apt-get $APT_OPTS install --download-only -y -q --no-install-recommends $pkgs >&2 ||
	die "downloading$pkgs from the Debian mirror failed"

# python3-* libraries the base already has never appear in the plan but
# are still needed inside the venv (it does not see system site-packages):
# fetch those debs too.
have=
# shellcheck disable=SC2086
for p in $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances $pkgs | grep -E '^python3-[a-z0-9.+-]+$' | sort -u); do
	case $p in python3-minimal | python3-venv | python3-distutils | python3-lib2to3) continue ;; esac
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ]; then
		v=$(dpkg-query -W -f='${Version}' "$p")
		have="$have $p=$v"
	fi
done
if [ -n "$have" ]; then
	log "already in the base, fetching their debs for the venv:$have"
	# shellcheck disable=SC2086
	(cd "$DEBS" && apt-get $APT_OPTS download $have >&2) || die "apt-get download$have failed"
fi

PYVER=$("$PY" -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
"$PY" -m venv --without-pip "$VENV" || die "python3 -m venv failed (is the venv module in the base image?)"
SITE="$VENV/lib/$PYVER/site-packages"
[ -d "$SITE" ] || die "venv has no $SITE"

arch=$(dpkg --print-architecture)
installed=
for pv in $plan $have; do
	p=${pv%%=*}
	v=${pv#*=}
	case $p in python3-*) ;; *) continue ;; esac
	case $p in python3-minimal | python3.*) continue ;; esac
	# Debian files encode the epoch's colon as %3a.
	fv=$(printf '%s' "$v" | sed 's/:/%3a/')
	deb=
	for a in "$arch" all; do
		[ -f "$DEBS/${p}_${fv}_${a}.deb" ] && deb="$DEBS/${p}_${fv}_${a}.deb"
	done
	[ -n "$deb" ] || die "expected $p $v in $DEBS but it is not there (download interrupted?); re-run the build"
	dpkg-deb -x "$deb" "$STAGE/$p" || die "cannot unpack $deb"
	if [ -d "$STAGE/$p/usr/lib/python3/dist-packages" ]; then
		cp -a "$STAGE/$p/usr/lib/python3/dist-packages/." "$SITE/"
	fi
	installed="$installed $p=$v"
done
[ -n "$installed" ] || die "nothing was unpacked into $SITE"

# Every direct dependency must import from the venv alone: a missing
# transitive package shows up here, not at container start.
for d in $deps; do
	mod=$(printf '%s' "$d" | tr '-' '_')
	"$VENV/bin/python" -c "import $mod" || die "'import $mod' fails in $VENV after unpacking:$installed"
done

log "installed into $SITE:"
for pv in $installed; do
	printf '  %-32s %s\n' "${pv%%=*}" "${pv#*=}" >&2
done
