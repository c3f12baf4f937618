#!/usr/bin/env bash
# Builds the real control plane the e2e tier runs (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) from the versions go.mod pins, into a cache outside the repo:
#   ${STACKBLAZE_K8S_CACHE:-$HOME/.cache/stackblaze}/k8s-<kubernetes version>/
# A stamp file naming the versions marks a complete build; when it matches, nothing is built. Prints the
# directory on its last line and how long it took on stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

# The machine's Go (1.26); Debian's golang-go (1.19) can sit earlier on PATH and cannot build this.
go_bin=""
for candidate in "${GO:-}" "$(command -v go || true)" /usr/local/go/bin/go; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  minor="$("$candidate" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  if [ "${minor:-0}" -ge 26 ] 2>/dev/null; then go_bin="$candidate"; break; fi
done
if [ -z "$go_bin" ]; then
  echo "build.sh: no Go >= 1.26 found (tried \$GO, go on PATH, /usr/local/go/bin/go); install Go 1.26" >&2
  exit 2
fi

version() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' go.mod; }
kube="$(version k8s.io/kubernetes)"
etcd="$(version go.etcd.io/etcd/server/v3)"
kwok="$(version sigs.k8s.io/kwok)"
out="${STACKBLAZE_K8S_CACHE:-$HOME/.cache/stackblaze}/k8s-$kube"
stamp="kubernetes=$kube etcd=$etcd kwok=$kwok"
start=$(date +%s)

complete=1
for file in stamp etcd kube-apiserver kube-controller-manager kube-scheduler kwok kwok-stages.yaml; do
  [ -f "$out/$file" ] || complete=0
done
if [ "$complete" = 1 ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then
  echo "build.sh: $stamp already built in $out (0s)" >&2
  echo "$out"
  exit 0
fi

# A fresh directory beside the final one, renamed at the end: an interrupted build never leaves a
# directory that looks complete.
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d "$out.building.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
echo "build.sh: building $stamp with $("$go_bin" env GOVERSION) into $out (cold: ~7-8 min on 2 cores)" >&2

# What Kubernetes' own hack/lib/version.sh stamps: without it the servers call themselves v0.0.0-master.
minor="${kube#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# kwok first: the smallest, so a dependency that does not compile at this release shows up early.
"$go_bin" build -trimpath -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok
"$go_bin" build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  "$go_bin" build -trimpath -ldflags "$kube_ldflags" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done

# kwok has no built-in behaviour when run on its own (kwokctl writes this config for it): the stages that
# make its nodes Ready and keep their leases fresh, and its pods Running, then gone when deleted.
kwok_dir="$("$go_bin" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
first=1
for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  [ "$first" = 1 ] || echo "---"
  first=0
  cat "$kwok_dir/kustomize/stage/$stage.yaml"
done > "$tmp/kwok-stages.yaml"

echo "$stamp" > "$tmp/stamp"
chmod 755 "$tmp"  # mktemp made it private
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build.sh: built $stamp in $(($(date +%s) - start))s; sizes:" >&2
(cd "$out" && du -h etcd kube-apiserver kube-controller-manager kube-scheduler kwok) >&2
echo "$out"
