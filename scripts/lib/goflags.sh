# Sourced by every script that runs the Go toolchain. One set of build settings
# for every compile in CI, the ones ci/daggerbuild uses for the binaries the
# Dagger path ships (CGO_ENABLED=0, -trimpath): the kgci and kgci-supplychain
# that test.sh tests are built as users get them, and go vet, go test, the
# pipeline's binaries, buildkitd and the e2e tests' checker share one compile
# cache, so a fresh machine compiles each package once instead of once per
# setting. (-buildvcs only changes the link of a main package, not the cache.)
export CGO_ENABLED=0
case " ${GOFLAGS:-} " in
  *" -trimpath "*) ;;
  *) export GOFLAGS="-trimpath${GOFLAGS:+ $GOFLAGS}" ;;
esac
