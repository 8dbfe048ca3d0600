#!/usr/bin/env bash
# Runs every test tier of Sortie, installing what the tests need first. The tests start their
# own private instances (redis-server on a unix socket, the server and agents on free loopback
# ports, etcd and kube-apiserver built from source) and clean them up; nothing here touches
# services already running on the machine.
#
#   ./test.sh            everything (what CI runs)
#   FUZZTIME=30s ./test.sh   longer fuzz runs
set -euo pipefail
cd "$(dirname "$0")"

FUZZTIME=${FUZZTIME:-10s}
step() { printf '\n== %s\n' "$*"; }

step "prerequisites"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is missing; installing it from Debian's packages"
  if [ "$(id -u)" -ne 0 ]; then
    echo "run as root, or install redis-server yourself (apt-get install redis-server)" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# The package starts a system instance on 6379; the tests never use it, they start their own:
# single servers on unix sockets and, for the Redis Cluster tier, three masters in cluster
# mode on free loopback ports, joined by redistest.NewCluster itself (no redis-cli needed).
# That needs redis-server 7.0 or newer (CLUSTER ADDSLOTSRANGE); Debian 12 and later have it.
redis-server --version
redis_major=$(redis-server --version | sed -E 's/.* v=([0-9]+)\..*/\1/')
if [ "${redis_major:-0}" -lt 7 ]; then
  echo "redis-server 7.0 or newer is needed for the Redis Cluster tests" >&2
  exit 1
fi
go version
# The single sign-on tests build Ory Hydra (tools/hydra) with SQLite, which needs cgo.
if ! command -v gcc >/dev/null 2>&1; then
  echo "gcc is missing: the SSO tests build Ory Hydra with cgo (apt-get install gcc)" >&2
  exit 1
fi
# The console's browser tests (e2e/console, in 'go test ./...') drive Debian's chromium
# headless with playwright-core from console/node_modules (npm ci, in the console step).
if [ ! -x /usr/bin/chromium ]; then
  echo "chromium is missing; installing it from Debian's packages"
  if [ "$(id -u)" -ne 0 ]; then
    echo "run as root, or install chromium yourself (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version

step "formatting and vet"
unformatted=$(gofmt -l $(git ls-files -co --exclude-standard '*.go' | grep -v '^gen/' | grep -v '^e2e/tools/') || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...

step "protobuf: buf lint, buf format, and generated code up to date"
buf() { go tool -modfile=tools/go.mod buf "$@"; }
buf lint
buf format -d --exit-code
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
cp -r gen "$before/gen"
buf generate
if ! diff -r "$before/gen" gen; then
  echo "gen/ is stale: run 'go tool -modfile=tools/go.mod buf generate' and commit the result" >&2
  exit 1
fi

step "packaging: container images, Helm, goreleaser"
# Helm and goreleaser are Go tools pinned in modules of their own (tools/helm, tools/release);
# the first run builds them (several minutes each on 2 cores), later runs take them from
# Go's cache. The charts' lint, golden and bad-values tests run in 'go test ./...' (charts/),
# applying them to a real kube-apiserver in e2e/install.
go tool -modfile=tools/helm/go.mod helm version --short
# The daemonless image build is a module of its own too (go-containerregistry stays out of
# the product's go.mod): it builds both images for this machine and inspects them.
(cd deploy/image && go vet ./... && go test -count=1 -timeout 20m ./...)
goreleaser() { go tool -modfile=tools/release/go.mod goreleaser "$@"; }
goreleaser check
# A snapshot build of this machine's target, into a temporary dist/, so the config cannot rot.
{ cat .goreleaser.yaml; echo "dist: $before/dist"; } > "$before/goreleaser.yaml"
goreleaser build --config "$before/goreleaser.yaml" --snapshot --single-target --clean
"$before"/dist/sortie-server_*/sortie-server --version

step "real-cluster binaries (etcd, kube-apiserver, controllers, KWOK, Argo Rollouts) and Ory Hydra"
echo "built from their Go modules into a cache; the first build takes 20 minutes or more on 2 cores"
# Ory Hydra, the SSO tests' identity provider, builds into the same cache meanwhile (its own
# test builds it once, then starts it): the cluster build leaves a core idle while it links.
go test -count=1 ./e2e/hydra > "$before/hydra.log" 2>&1 &
hydra_build=$!
SORTIE_E2E_BIN="$(bash e2e/build.sh | tail -n1)"
export SORTIE_E2E_BIN
if ! wait "$hydra_build"; then
  cat "$before/hydra.log" >&2
  echo "building or starting Ory Hydra (tools/hydra) failed" >&2
  exit 1
fi
tail -n1 "$before/hydra.log"

step "console: npm ci, generated TypeScript, type-check, unit tests, committed build up to date"
# The console's build output (console/dist) is committed so that the run command needs no
# Node.js; this step proves it is the build of the committed sources. Node.js 20.19 or newer
# with npm is needed here only.
node_version=$(node --version 2>/dev/null || true)
if ! printf '%s\n' "v20.19.0" "${node_version:-v0}" | sort -V -C; then
  echo "Node.js 20.19 or newer (with npm) is needed to check the console build; found ${node_version:-none}" >&2
  exit 1
fi
(cd console && npm ci --no-audit --no-fund --loglevel=error)
cp -r console/src/gen "$before/console-gen"
buf generate --template console/buf.gen.yaml
if ! diff -r "$before/console-gen" console/src/gen; then
  echo "console/src/gen is stale: run 'go tool -modfile=tools/go.mod buf generate --template console/buf.gen.yaml' and commit the result" >&2
  exit 1
fi
(cd console && npx tsc --noEmit && npx vitest run --reporter=dot)
cp -r console/dist "$before/console-dist"
(cd console && npm run --silent build -- --logLevel warn)
if ! diff -r "$before/console-dist" console/dist; then
  echo "console/dist is stale: run 'npm run build' in console/ and commit console/dist with the sources" >&2
  exit 1
fi

step "unit, integration and real-cluster tests (-race)"
go test -race -count=1 -timeout 20m ./...

step "fuzzing ($FUZZTIME per target)"
for target in $(grep -rhoE '^func (Fuzz[A-Za-z0-9_]+)' --include='*_test.go' . | sed 's/func //' | sort -u); do
  pkg=$(dirname "$(grep -rlE "^func $target\(" --include='*_test.go' . | head -n1)")
  echo "$target in $pkg"
  # Go 1.26's fuzz coordinator can end a healthy run with a bare "context deadline exceeded"
  # at the -fuzztime boundary when its workers are starved of CPU (golang/go#75804, fixed in
  # Go 1.27). A real finding always writes a reproducer ("Failing input written to"), so
  # only that bare deadline failure is tried once more; anything else fails at once.
  for attempt in 1 2; do
    log=$(mktemp)
    if go test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$log"; then
      rm -f "$log"
      break
    fi
    if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"; then
      echo "$target: the fuzz coordinator's deadline race (golang/go#75804), no failing input; running it once more"
      rm -f "$log"
      continue
    fi
    rm -f "$log"
    exit 1
  done
done

step "benchmarks (one short pass so they keep working; see README for real runs)"
go test -run '^$' -bench . -benchtime 200x $(go list ./... | grep -v /e2e/)
go run ./cmd/sortie-bench pipelines -pipelines 50 -json "$before/pipelines.json"
# 200 idle agents, their memory against the bare server, the reconnect storm, the plot: seconds.
go run ./cmd/sortie-bench agents -agents 200 -settle 1s -json "$before/agents.json" -plot "$before/agents.png"
go test -run '^$' -bench Latency -benchtime 3x ./e2e/pipelines
go run ./cmd/sortie-bench commands -sizes 10,100 -requests 100 -json "$before/commands.json"
go test -run '^$' -bench Inventory -benchtime 1x ./e2e/inventory -args -objects 1000 -reads 20

echo
echo "all test tiers passed"
