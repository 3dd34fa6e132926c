#!/usr/bin/env bash
# The main job on a machine with BuildKit and Docker but no Dagger: start the
# engines (if not running), make the offline base images (cached), build both
# images with BuildKit, load the tarballs into Docker and run test-e2e on them,
# leave the results (and the tested tarballs, results/images/) in results/. Engines this script started are stopped when it ends, however
# it ends; engines that were already running are left alone.
#
#   bash scripts/pipeline.sh [--profile offline|upstream] [--results DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/phase.sh
. scripts/lib/engines.sh
. scripts/lib/goflags.sh

profile=offline
results=results
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs a value}; shift 2 ;;
    --results) results=${2:?--results needs a value}; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pipeline.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

cleanup() {
  local rc=$?
  stop_started_engines
  phase_summary
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


phase "install Debian packages" bash scripts/install-deps.sh
phase "start buildkitd" ensure_engine buildkitd
phase "start dockerd" ensure_engine dockerd
# shellcheck disable=SC1091
. /run/kgci/engines.env
export BUILDKIT_HOST DOCKER_HOST
if [ "$profile" = offline ]; then
  # The images' and the test stack's bases; docker and go serve the Dagger path only.
  phase "offline base images" bash scripts/make-base-images.sh python node nginx postgres
fi
phase "build kgci" go build -o bin/kgci ./ci/cmd/kgci
# The SBOM and vulnerability tool (syft, grype) is a module of its own (ci/supplychain);
# kgci finds it next to itself.
phase "build kgci-supplychain" go build -C ci/supplychain -o "$PWD/bin/kgci-supplychain" ./cmd/kgci-supplychain
mkdir -p "$results"
# Each run re-tags kidney_genetics_*:latest and leaves the previous images
# dangling; in this private engine (its data root is under KGCI_CACHE) they
# would pile up run after run.
phase "prune dangling images" docker image prune -f
# --provenance: BuildKit's own SLSA provenance beside each tarball; kgci publish
# attaches it to the pushed digest (docs/supply-chain.md).
phase "build images ($profile)" bin/kgci build --profile "$profile" --out "$results/images" --provenance mode=max
# The tarballs themselves are loaded and tested, and their digests recorded:
# `kgci publish` pushes only tarballs a passing run tested. The Dagger path
# runs this same command (ci/daggerrun.TestArgs; a test compares the two).
phase "test-e2e ($profile)" bin/kgci test-e2e --profile "$profile" --images "$results/images" --results "$results"
