#!/usr/bin/env bash
# Runs every Crest test: unit tests, image checks against crit, end-to-end tests on real processes.
# Needs root (ptrace, clone3 with set_tid). Tests run the AOT binary from out/crest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/publish.sh
export CREST_BIN="$PWD/out/crest"
dotnet test Crest.slnx -c Release --nologo "$@"
