#!/usr/bin/env bash
# Installs what building and testing Crest needs on Debian 12, as root: gcc for the C test
# fixtures, clang and zlib for the Native AOT link, Debian's criu package for `crit` (the
# external check of our image files). The .NET 10 SDK must be on PATH. Safe to run again.
set -euo pipefail

need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v clang >/dev/null || need+=(clang)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
command -v crit >/dev/null || need+=(criu)
/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null || need+=(python3-protobuf)
command -v ip >/dev/null || need+=(iproute2)
command -v tc >/dev/null || need+=(iproute2) # tests hold a link to a rate (tbf)

if ((${#need[@]})); then
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v dotnet >/dev/null; then
  echo "deps: the .NET 10 SDK is not on PATH; install package dotnet-sdk-10.0 (Microsoft's Debian repository) and run again" >&2
  exit 1
fi
