#!/usr/bin/env bash
# Runs Dagger's own Go codegen on the module in main.go, without an engine,
# and checks what an engine would do with it:
#
#   1. builds cmd/codegen of Dagger $DAGGER_VERSION from source;
#   2. turns the engine schema Dagger publishes (docs/docs-graphql/
#      schema.graphqls) into introspection JSON, and proves it faithful by
#      regenerating the dagger.io/dagger library from it and comparing the
#      code with the published module of the same version;
#   3. regenerates the module's bindings (dagger.gen.go, internal/dagger/)
#      and compares them with the committed ones (--update rewrites them);
#   4. generates them again the way engine $DAGGER_VERSION does in its
#      runtime container (--lib-version $ENGINE_LIB_VERSION, go mod tidy),
#      then `go build .` as the engine's Go SDK runtime does;
#   5. records the module API that codegen registers with the engine
#      (generate-typedefs against ci/daggertest's fake engine) and compares
#      it with testdata/module-typedefs.golden (--update rewrites it);
#   6. compiles ci/daggerbuild + ci/daggerrun and runs the golden query
#      tests against every dagger.io/dagger version that engines from
#      v0.20.0 to v1.0.0-beta.10 compile modules against;
#   7. reminds which Go an engine must have been built with (go.mod's go line).
#
# Usage: ci/daggertest/codegen.sh [--update]      (from the repository root)
# Needs: go, git, tar; network for the Go module proxy and, unless DAGGER_GIT
# names a local clone, github.com.
#   DAGGER_GIT  git directory or URL of dagger/dagger (default: GitHub)
#   KGCI_CACHE  cache directory (default: /var/cache/kidney-genetics-ci)
set -euo pipefail

DAGGER_VERSION=v0.20.0
# core/sdk/go_sdk.go of Dagger v0.20.0 passes --lib-version v0.19.11 to
# codegen: modules run by that engine compile against dagger.io/dagger v0.19.11.
ENGINE_LIB_VERSION=v0.19.11
# The library versions engines pin (goSDKLibVersion in core/sdk): v0.20.0-v0.20.3
# use v0.19.11, v0.20.8 uses v0.20.6, v0.21.8 uses v0.21.8, v1.0.0-beta.10 v0.21.7.
LIB_MATRIX=(v0.19.11 v0.20.6 v0.21.7 v0.21.8)
MODULE_NAME=kidney-genetics

update=false
case "${1:-}" in
"") ;;
--update) update=true ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "codegen.sh: unknown argument $1 (use --update or nothing)" >&2
	exit 2
	;;
esac

die() {
	echo "codegen.sh: $*" >&2
	exit 1
}
step() { printf '\n== %s\n' "$*"; }

[[ -f dagger.json && -f main.go && -f go.mod ]] || die "run me from the repository root (where dagger.json and main.go are)"
for tool in go git tar diff; do
	command -v "$tool" >/dev/null || die "$tool is not installed (see scripts/deps/dagger.apt; Go comes from go.dev)"
done
root=$PWD
cache="${KGCI_CACHE:-/var/cache/kidney-genetics-ci}/dagger-codegen-$DAGGER_VERSION"
mkdir -p "$cache"

tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

# --- 1. Dagger's codegen --------------------------------------------------
src="$cache/src"
paths=(go.mod go.sum cmd/codegen sdk/go engine/distconsts engine/slog internal/fsutil docs/docs-graphql)
if [[ ! -f "$src/cmd/codegen/main.go" ]]; then
	step "fetching dagger/dagger $DAGGER_VERSION sources"
	rm -rf "$src.part" && mkdir -p "$src.part"
	git_src="${DAGGER_GIT:-https://github.com/dagger/dagger}"
	if [[ -d "$git_src" ]]; then
		git --git-dir="$git_src" archive "$DAGGER_VERSION" "${paths[@]}" | tar -x -C "$src.part" ||
			die "cannot read $DAGGER_VERSION from $git_src"
	else
		git clone --quiet --depth 1 --branch "$DAGGER_VERSION" --filter=blob:none --sparse "$git_src" "$src.part" ||
			die "cannot clone $git_src at $DAGGER_VERSION; set DAGGER_GIT to a local clone"
		git -C "$src.part" sparse-checkout set "${paths[@]}"
	fi
	mv "$src.part" "$src"
fi
codegen="$cache/codegen"
if [[ ! -x "$codegen" ]]; then
	step "building Dagger's cmd/codegen (a few minutes the first time)"
	(cd "$src" && go build -o "$codegen.part" ./cmd/codegen) || die "building cmd/codegen failed"
	mv "$codegen.part" "$codegen"
fi

# --- 2. introspection JSON, proved against the published library -----------
step "introspection JSON from docs/docs-graphql/schema.graphqls"
mkdir -p "$src/cmd/sdl2introspection"
cp "$root/ci/daggertest/codegen/sdl2introspection.go" "$src/cmd/sdl2introspection/main.go"
schema="$cache/introspection.json"
(cd "$src" && go run ./cmd/sdl2introspection/main.go docs/docs-graphql/schema.graphqls "$DAGGER_VERSION") >"$schema.part"
mv "$schema.part" "$schema"

libdir=$(cd "$tmp" && go mod download -json "dagger.io/dagger@$DAGGER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -d "$libdir" ]] || die "cannot download dagger.io/dagger@$DAGGER_VERSION from the Go module proxy"
cp -r "$libdir" "$tmp/lib" && chmod -R u+w "$tmp/lib"
rm "$tmp/lib/dagger.gen.go" "$tmp/lib/dag/dag.gen.go"
echo 'package dagger' >"$tmp/lib/dagger.gen.go"
(cd "$tmp/lib" && "$codegen" generate-library --introspection-json-path "$schema" -o . >"$tmp/lib.log" 2>&1) ||
	{ tail -20 "$tmp/lib.log"; die "generate-library failed"; }
# Comments differ (the SDL printer wraps descriptions); code must not.
for f in dagger.gen.go dag/dag.gen.go; do
	if ! diff <(grep -v '^[[:space:]]*//' "$libdir/$f") <(grep -v '^[[:space:]]*//' "$tmp/lib/$f") >"$tmp/lib.diff"; then
		head -40 "$tmp/lib.diff"
		die "the library generated from our introspection JSON differs from dagger.io/dagger@$DAGGER_VERSION/$f: fix ci/daggertest/codegen/sdl2introspection.go"
	fi
done
echo "regenerated dagger.io/dagger@$DAGGER_VERSION: same code as the published module (comments aside)"

# --- 3. the module's committed bindings ------------------------------------
copy_module() {
	mkdir -p "$1"
	cp -r "$root/go.mod" "$root/go.sum" "$root/dagger.json" "$root/main.go" "$root/ci" "$1/"
}
gen_module() { # dir lib-version
	(cd "$1" && GOFLAGS=-mod=mod "$codegen" generate-module --output . --module-source-path . \
		--module-name "$MODULE_NAME" --introspection-json-path "$schema" --lib-version "$2" >"$1.log" 2>&1) ||
		{ grep -v 'for GOROOT=\|^starting GOROOT' "$1.log" | tail -20; die "codegen generate-module (lib $2) failed"; }
}
step "module bindings (codegen $DAGGER_VERSION, lib $DAGGER_VERSION)"
copy_module "$tmp/mod"
gen_module "$tmp/mod" "$DAGGER_VERSION"
generated=(dagger.gen.go internal/dagger/dagger.gen.go)
stale=false
for f in "${generated[@]}"; do
	if ! cmp -s "$tmp/mod/$f" "$root/$f"; then
		stale=true
		if $update; then
			mkdir -p "$(dirname "$root/$f")"
			cp "$tmp/mod/$f" "$root/$f"
			echo "updated $f"
		else
			diff -u "$root/$f" "$tmp/mod/$f" | head -40 || true
		fi
	fi
done
if $stale && ! $update; then
	die "committed bindings are stale: run ci/daggertest/codegen.sh --update and commit them"
fi
$stale || echo "committed ${generated[*]} are what codegen $DAGGER_VERSION generates"

# --- 4. what engine $DAGGER_VERSION does ------------------------------------
step "engine $DAGGER_VERSION's runtime build (lib $ENGINE_LIB_VERSION, go mod tidy, go build .)"
copy_module "$tmp/engine"
gen_module "$tmp/engine" "$ENGINE_LIB_VERSION"
grep -q "dagger.io/dagger $ENGINE_LIB_VERSION" "$tmp/engine/go.mod" || die "codegen did not pin dagger.io/dagger $ENGINE_LIB_VERSION"
(cd "$tmp/engine" && go build -ldflags "-s -w" -o "$tmp/runtime" .) || die "the module does not build the way engine $DAGGER_VERSION builds it"
echo "module runtime built against dagger.io/dagger $ENGINE_LIB_VERSION"

# --- 5. the module API registered with the engine ---------------------------
step "module API (codegen generate-typedefs against the fake engine)"
go build -o "$tmp/fakeengine" ./ci/daggertest/cmd/fakeengine
(cd "$tmp/mod" && "$tmp/fakeengine" -o "$tmp/typedefs.txt" -- "$codegen" generate-typedefs --module-source-path . \
	--module-name "$MODULE_NAME" --introspection-json-path "$schema" --output typedefs.json >"$tmp/typedefs.log" 2>&1) ||
	{ tail -20 "$tmp/typedefs.log"; die "codegen generate-typedefs failed"; }
golden="$root/ci/daggertest/testdata/module-typedefs.golden"
if $update; then
	cp "$tmp/typedefs.txt" "$golden"
	echo "wrote ${golden#"$root"/}"
elif ! diff -u "$golden" "$tmp/typedefs.txt" >"$tmp/typedefs.diff"; then
	head -60 "$tmp/typedefs.diff"
	die "the module API changed; if intended, run ci/daggertest/codegen.sh --update and review the diff"
else
	echo "module API matches ${golden#"$root"/}"
fi

# --- 6. every library version engines compile modules against ---------------
step "ci/daggerbuild + ci/daggerrun against dagger.io/dagger ${LIB_MATRIX[*]}"
for v in "${LIB_MATRIX[@]}"; do
	cp go.mod "$tmp/alt.mod"
	cp go.sum "$tmp/alt.sum"
	go mod edit -modfile "$tmp/alt.mod" -require "dagger.io/dagger@$v"
	GOFLAGS=-mod=mod go test -count=1 -modfile "$tmp/alt.mod" ./ci/daggerbuild ./ci/daggerrun ./ci/daggertest >"$tmp/lib-$v.log" 2>&1 ||
		{ tail -30 "$tmp/lib-$v.log"; die "with dagger.io/dagger $v the pipeline does not compile or sends other queries"; }
	echo "dagger.io/dagger $v: compiles, same golden queries"
done
# --- 7. the go line -----------------------------------------------------------
# codegen refuses a go.mod whose go line is newer than the Go it was built
# with ("existing go.mod has unsupported version"); so does the engine's go
# build. Not an error here, because it depends on the user's engine.
goline=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
step "go.mod says go $goline"
echo "the module loads only on engines whose Go SDK was built with Go >= $goline (docs/dagger.md, Go version)"
step "done"
