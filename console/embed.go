// Package console holds the built web console (console/dist, made by `npm run build` from
// the TypeScript sources here) for sortie-server to serve at /console/. The build output is
// committed so that `go run ./cmd/sortie-server` serves the console with no Node.js on the
// machine; test.sh rebuilds it and fails when the committed copy is stale.
package console

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Files returns the built console: index.html at the root, hashed assets under assets/.
func Files() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path: only a broken build gets here
	}
	return sub
}
