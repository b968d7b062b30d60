#!/usr/bin/env bash
# Builds the Native AOT `crest` binary into out/crest.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet publish src/Crest.Cli/Crest.Cli.csproj -c Release -o out --nologo -v quiet
rm -f out/*.dbg out/*.pdb
