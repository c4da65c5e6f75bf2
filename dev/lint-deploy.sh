#!/usr/bin/env bash
# Lints everything that deploys and observes Tributary, and exits non-zero on any finding:
#
#   1. kustomize build of k8s/overlays/dev and k8s/overlays/prod (into .infra/deploy/)
#   2. kube-score on each build (k8s/kube-score.args says which checks are tuned, and why)
#   3. the PrometheusRule in k8s/ is what `sync-rules` generates from grafana/alerts/
#   4. promtool check rules (with its linter) and the promtool unit tests of every alert
#      (tests/deploy/alerts.test.yml)
#
# The Grafana dashboards, the alert rules' metrics and the manifests against the binaries
# are checked by `cargo test --release -p tributary-tests --test deploy` (tests/tests/deploy/),
# which installs these same tools with `bash dev/lint-deploy.sh tools`.
#
# The tools go, pinned, into .infra/tools/bin, once: kustomize and kube-score from the Go
# module proxy (`go install module@version`), promtool and the prometheus server out of
# Debian's `prometheus` package, and the pushgateway out of Debian's `prometheus-pushgateway`
# (downloaded and unpacked, not installed: installing them would add a system user and,
# where systemd runs, start the servers; the test that needs them starts its own). Later runs
# reuse them.
#
# Usage: bash dev/lint-deploy.sh            lint
#        bash dev/lint-deploy.sh tools      only install the tools
#        bash dev/lint-deploy.sh sync-rules rewrite k8s/base/monitoring/prometheusrule.yaml
#                                           from grafana/alerts/tributary.rules.yml
#
# kube-linter and Grafana's dashboard-linter were the first choice; the Go module proxy
# refuses both (403 for golang.stackrox.io/kube-linter and for every dashboard-linter
# version), hence kube-score and the dashboard lint of tests/tests/deploy/dashboards.rs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5
KUSTOMIZE_VERSION=v5.8.2            # v5.8.3 needs Go 1.27
KUBE_SCORE_MODULE=github.com/zegl/kube-score/cmd/kube-score
KUBE_SCORE_VERSION=v1.20.0
PROMETHEUS_DEB=prometheus           # Debian's package; promtool is taken out of it
PUSHGATEWAY_DEB=prometheus-pushgateway  # Debian's package (1.5.1 in bookworm)
KUBERNETES_VERSION=v1.30            # what kube-score checks API versions against

TOOLS="$ROOT/.infra/tools"
BIN="$TOOLS/bin"
OUT="$ROOT/.infra/deploy"
RULES=grafana/alerts/tributary.rules.yml
PROMRULE=k8s/base/monitoring/prometheusrule.yaml

# The PrometheusRule object: the rules file's groups under spec, its text kept as written.
prometheusrule() {
  cat <<'EOF'
# Generated from grafana/alerts/tributary.rules.yml by `bash dev/lint-deploy.sh sync-rules`:
# edit that file, not this one (dev/lint-deploy.sh fails when the two differ).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: tributary
spec:
EOF
  sed -n '/^groups:/,$p' "$RULES" | sed 's/^/  /; s/^  $//'
}

case "${1:-lint}" in
  sync-rules)
    prometheusrule > "$PROMRULE"
    echo "wrote $PROMRULE from $RULES"
    exit 0
    ;;
  lint|tools) ;;
  *)
    echo "usage: $0 [lint|tools|sync-rules]" >&2
    exit 2
    ;;
esac

t0=$(date +%s)
mkdir -p "$BIN" "$TOOLS/versions" "$OUT"
failed=()
n_steps=0
step() { echo "== $*"; n_steps=$((n_steps + 1)); }
fail() { echo "FAIL: $*"; failed+=("$1"); }

# ---------------------------------------------------------------------------- tools
go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp="$TOOLS/versions/$1"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$module@$version" ]; then
    return 0
  fi
  command -v go >/dev/null || { echo "go is needed to install $name" >&2; exit 1; }
  echo "installing $name $version (go install $module@$version)"
  GOBIN="$BIN" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install "$module@$version"
  echo "$module@$version" > "$stamp"
}

apt_update_once() {
  [ -n "${APT_UPDATED:-}" ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  APT_UPDATED=1
}

# promtool and the prometheus server, both out of the one Debian package (same version). The
# server is for tests/tests/observability.rs, which scrapes the running services with it.
prometheus_tools() {
  local stamp="$TOOLS/versions/promtool" server_stamp="$TOOLS/versions/prometheus"
  [ -x "$BIN/promtool" ] && [ -s "$stamp" ] && [ -x "$BIN/prometheus" ] && [ -s "$server_stamp" ] && return 0
  echo "installing promtool and prometheus from Debian's $PROMETHEUS_DEB package"
  local tmp; tmp=$(mktemp -d)
  # apt-get download needs no root; a stale package list is refreshed once and retried.
  if ! (cd "$tmp" && apt-get download -qq "$PROMETHEUS_DEB" 2>/dev/null); then
    apt_update_once
    (cd "$tmp" && apt-get download -qq "$PROMETHEUS_DEB" 2>/dev/null)
  fi
  local deb; deb=$(ls "$tmp"/*.deb)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool ./usr/bin/prometheus
  install -m 0755 "$tmp/usr/bin/promtool" "$BIN/promtool"
  install -m 0755 "$tmp/usr/bin/prometheus" "$BIN/prometheus"
  dpkg-deb -f "$deb" Version > "$stamp"
  cp "$stamp" "$server_stamp"
  rm -rf "$tmp"
}

# The Pushgateway the batch jobs push to (`tributary compact|vacuum|reconcile|erase
# --pushgateway URL`), for tests/tests/observability.rs, which starts its own.
pushgateway_tool() {
  local stamp="$TOOLS/versions/pushgateway"
  [ -x "$BIN/pushgateway" ] && [ -s "$stamp" ] && return 0
  echo "installing pushgateway from Debian's $PUSHGATEWAY_DEB package"
  local tmp; tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq "$PUSHGATEWAY_DEB" 2>/dev/null); then
    apt_update_once
    (cd "$tmp" && apt-get download -qq "$PUSHGATEWAY_DEB" 2>/dev/null)
  fi
  local deb; deb=$(ls "$tmp"/*.deb)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/prometheus-pushgateway
  install -m 0755 "$tmp/usr/bin/prometheus-pushgateway" "$BIN/pushgateway"
  dpkg-deb -f "$deb" Version > "$stamp"
  rm -rf "$tmp"
}

step "tools (.infra/tools/bin)"
go_tool kustomize "$KUSTOMIZE_MODULE" "$KUSTOMIZE_VERSION"
go_tool kube-score "$KUBE_SCORE_MODULE" "$KUBE_SCORE_VERSION"
prometheus_tools
pushgateway_tool
echo "kustomize $("$BIN/kustomize" version), kube-score $KUBE_SCORE_VERSION, promtool and prometheus $(cat "$TOOLS/versions/promtool"), pushgateway $(cat "$TOOLS/versions/pushgateway")"
[ "${1:-lint}" = tools ] && exit 0

# ---------------------------------------------------------------------------- kubernetes
mapfile -t score_args < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' k8s/kube-score.args)
for overlay in dev prod; do
  step "kustomize build k8s/overlays/$overlay"
  if "$BIN/kustomize" build "k8s/overlays/$overlay" > "$OUT/$overlay.yaml"; then
    echo "$(grep -c '^kind:' "$OUT/$overlay.yaml") objects: $(grep '^kind:' "$OUT/$overlay.yaml" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}')"
  else
    fail "kustomize-$overlay"
    continue
  fi
  step "kube-score k8s/overlays/$overlay"
  # ci output: one line per check and object; print the findings (not OK, not SKIPPED).
  set +e
  "$BIN/kube-score" score --output-format ci --exit-one-on-warning \
    --kubernetes-version "$KUBERNETES_VERSION" "${score_args[@]}" "$OUT/$overlay.yaml" > "$OUT/$overlay.kube-score.txt"
  rc=$?
  set -e
  grep -Ev '^\[(OK|SKIPPED)\]' "$OUT/$overlay.kube-score.txt" || true
  echo "$(grep -c '^\[OK\]' "$OUT/$overlay.kube-score.txt") passed, $(grep -c '^\[SKIPPED\]' "$OUT/$overlay.kube-score.txt") skipped, $(grep -Evc '^\[(OK|SKIPPED)\]' "$OUT/$overlay.kube-score.txt") findings"
  [ $rc -eq 0 ] || fail "kube-score-$overlay"
done

# ---------------------------------------------------------------------------- alert rules
step "PrometheusRule in sync with $RULES"
if diff -u "$PROMRULE" <(prometheusrule) > "$OUT/prometheusrule.diff"; then
  echo "$PROMRULE is what sync-rules generates from $RULES"
else
  cat "$OUT/prometheusrule.diff"
  echo "$PROMRULE differs from $RULES: run bash dev/lint-deploy.sh sync-rules"
  fail "prometheusrule-sync"
fi

step "promtool check rules $RULES"
"$BIN/promtool" check rules --lint=all --lint-fatal "$RULES" || fail "promtool-check"

step "promtool test rules tests/deploy/alerts.test.yml"
"$BIN/promtool" test rules tests/deploy/alerts.test.yml || fail "promtool-test"

n_steps=$((n_steps - 1))  # the tools step is no check
echo
echo "($(( $(date +%s) - t0 )) s; builds and kube-score reports in .infra/deploy/)"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "lint-deploy: $((n_steps - ${#failed[@]})) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
