#!/usr/bin/env bash
# Lints .github/workflows/*.yml with actionlint (pinned; built from the Go
# module proxy on first use, then cached by Go). actionlint runs shellcheck
# on every `run:` block, so shellcheck must be installed: a lint that
# silently skips the shell parts would pass broken scripts.
#
#   bash scripts/lint-workflows.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT=github.com/rhysd/actionlint/cmd/actionlint@v1.7.12

if ! command -v go >/dev/null 2>&1; then
  echo "lint-workflows.sh: go is not on PATH: install Go (go.mod names the version) and retry" >&2
  exit 1
fi
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "lint-workflows.sh: shellcheck is not installed: run 'bash scripts/install-deps.sh' (apt-get install shellcheck)" >&2
  exit 1
fi
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ ${#workflows[@]} -eq 0 ]; then
  echo "lint-workflows.sh: no workflow files under .github/workflows" >&2
  exit 1
fi

echo "lint-workflows.sh: actionlint ${ACTIONLINT##*@} (shellcheck $(shellcheck --version | sed -n 's/^version: //p')) on ${workflows[*]}"
go run "$ACTIONLINT" -no-color "${workflows[@]}"
echo "lint-workflows.sh: ${#workflows[@]} workflow file(s) clean"
