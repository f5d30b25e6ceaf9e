#!/usr/bin/env bash
# Makes `helm` available for the chart tests (tests/deploy/test_helm_chart.py), once: a helm on PATH is used
# as it is; otherwise the pinned version is built with the machine's Go from the Go module proxy into
# ~/.cache/leadbridge/helm/<version>/helm (about 2 minutes, once). Without Go it says so and exits 0: the
# chart test then fails with the same advice.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
cache="${LEADBRIDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leadbridge}"
dest="$cache/helm/$HELM_VERSION"
if command -v helm >/dev/null || [ -x "$dest/helm" ]; then
  exit 0
fi
go_bin="$(command -v go || true)"
[ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ] && go_bin=/usr/local/go/bin/go
if [ -z "$go_bin" ]; then
  echo "warning: helm is not installed and Go is not there to build it; the Helm chart test will fail." >&2
  echo "         Install helm (https://helm.sh/docs/intro/install/) or Go 1.24+ and run \`make helm\`." >&2
  exit 0
fi
echo "building helm $HELM_VERSION with $("$go_bin" version | cut -d' ' -f3) into $dest (once)"
mkdir -p "$dest"
GOFLAGS=-mod=mod GOBIN="$dest" "$go_bin" install \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
"$dest/helm" version --short
