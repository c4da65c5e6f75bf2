#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, once. Idempotent and quiet when
# everything is already there: librdkafka (built by rdkafka-sys) needs libcurl's headers for
# its OIDC support whenever TLS is on.
set -euo pipefail
need=()
for pkg in libcurl4-openssl-dev "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${need[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
