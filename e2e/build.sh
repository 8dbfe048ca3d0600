#!/usr/bin/env bash
# build.sh builds the real-cluster binaries the e2e tests run (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok, rollouts-controller) from the Go modules
# pinned in e2e/tools, into a cache keyed by those modules' go.mod and go.sum files:
#
#   ${SORTIE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sortie-e2e}/<hash>/
#     bin/                  the binaries
#     argo-rollouts-crds/   the Argo Rollouts CRDs (manifests/crds of its module)
#     kwok-stages/          the KWOK stages (kustomize/stage of its module: node/fast,
#                           node/heartbeat-with-lease, pod/fast)
#
# A cache that is already complete is used as is. Progress goes to stderr; the last line of
# stdout is the bin directory (e2e/kube reads it, or export it as SORTIE_E2E_BIN).
set -euo pipefail

# recipe is hashed with the module files: bump it when the build flags or the copied assets
# below change, so caches built the old way are not reused.
recipe=2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/tools"
export GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly"

log() { printf 'sortie-e2e: %s\n' "$*" >&2; }

hash="$(
	cd "$tools"
	{
		echo "recipe $recipe"
		for f in $(find . -name go.mod -o -name go.sum | LC_ALL=C sort); do
			echo "== $f"
			cat "$f"
		done
	} | sha256sum | cut -c1-16
)"
root="${SORTIE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sortie-e2e}/$hash"
bin="$root/bin"

# Each entry: module directory (relative to e2e/tools), package, binary name.
targets=(
	"etcd go.etcd.io/etcd/server/v3 etcd"
	". k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver"
	". k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager"
	". k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler"
	". sigs.k8s.io/kwok/cmd/kwok kwok"
	". github.com/argoproj/argo-rollouts/cmd/rollouts-controller rollouts-controller"
)

complete() {
	[ -f "$root/complete" ] || return 1
	local t name
	for t in "${targets[@]}"; do
		name="${t##* }"
		[ -x "$bin/$name" ] || return 1
	done
}

if complete; then
	log "using cached binaries in $bin"
	echo "$bin"
	exit 0
fi

mkdir -p "$root"
# Several test processes (go test runs packages in parallel) may ask for the binaries at
# once: one builds, the others wait and then find the cache complete.
exec 9>"$root/lock"
if ! flock -n 9; then
	log "waiting for another build of $root..."
	flock 9
fi
if complete; then
	log "using cached binaries in $bin"
	echo "$bin"
	exit 0
fi

# modDir prints the module cache directory of module $2 as required by the module in $1.
modDir() {
	(cd "$tools/$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2")
}

# modVersion prints the version of module $2 as required by the module in $1.
modVersion() {
	(cd "$tools/$1" && go list -m -f '{{.Version}}' "$2")
}

# k8sLDFlags stamps the Kubernetes binaries with their release, as its Makefile would.
k8sLDFlags() {
	local v major minor ldflags="" pkg
	v="$(modVersion . k8s.io/kubernetes)"
	major="${v#v}"
	major="${major%%.*}"
	minor="${v#v*.}"
	minor="${minor%%.*}"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$ldflags"
}

start=$SECONDS
first=1
mkdir -p "$bin"
for t in "${targets[@]}"; do
	read -r dir pkg name <<<"$t"
	if [ -x "$bin/$name" ]; then
		continue
	fi
	if [ $first = 1 ]; then
		log "building $name (first run, may take ~20 min)..."
		first=0
	else
		log "building $name..."
	fi
	ldflags="-s -w"
	case "$pkg" in
	k8s.io/kubernetes/*) ldflags+="$(k8sLDFlags)" ;;
	github.com/argoproj/argo-rollouts/*) ldflags+=" -X github.com/argoproj/argo-rollouts/utils/version.version=$(modVersion . github.com/argoproj/argo-rollouts | sed 's/^v//')" ;;
	esac
	t0=$SECONDS
	(cd "$tools/$dir" && go build -p 2 -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
	mv "$bin/$name.tmp" "$bin/$name"
	log "built $name in $((SECONDS - t0))s"
done

# copyYAML copies the YAML files (not kustomization.yaml) of the folders $2... into $1.
copyYAML() {
	local dst="$1" src f
	shift
	rm -rf "$dst.tmp"
	mkdir -p "$dst.tmp"
	for src in "$@"; do
		for f in "$src"/*.yaml; do
			[ "$(basename "$f")" = kustomization.yaml ] && continue
			cp "$f" "$dst.tmp/"
		done
	done
	chmod -R u+w "$dst.tmp"
	rm -rf "$dst"
	mv "$dst.tmp" "$dst"
}

argo="$(modDir . github.com/argoproj/argo-rollouts)"
copyYAML "$root/argo-rollouts-crds" "$argo/manifests/crds"
kwok="$(modDir . sigs.k8s.io/kwok)"
copyYAML "$root/kwok-stages" \
	"$kwok/kustomize/stage/node/fast" \
	"$kwok/kustomize/stage/node/heartbeat-with-lease" \
	"$kwok/kustomize/stage/pod/fast"

touch "$root/complete"
log "done in $((SECONDS - start))s"
echo "$bin"
