// Package charts holds Sortie's Helm charts: sortie (the server) and sortie-agent (one per
// target cluster; its sub-package renders the same template for the server's manifest
// route). The package's tests lint both charts with Helm (a Go tool pinned in
// tools/helm/go.mod), compare `helm template` with the golden files in testdata (refresh
// them with `go test ./charts -update`), check that values which cannot work fail with a
// message naming the value, and that the chart and the manifest route render the same
// objects. e2e/install applies both charts to a real kube-apiserver.
package charts
