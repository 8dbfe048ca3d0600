package gateway_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files (the committed OpenAPI document)")

// goldenOpenAPI is the committed OpenAPI document, part of the API contract.
var goldenOpenAPI = filepath.Join("..", "openapi", "openapi.json")

// TestOpenAPIGolden checks the document the running server serves against the committed one;
// run `go test ./gateway -run TestOpenAPIGolden -update` after an intended API change.
func TestOpenAPIGolden(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	r := ts.do(t, "GET", "/openapi.json", "", nil)
	if r.Status != 200 {
		t.Fatalf("GET /openapi.json: %d", r.Status)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi version %v, want 3.1.0", doc["openapi"])
	}
	// The server list names the test listener; it is not part of the contract.
	delete(doc, "servers")
	got, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(goldenOpenAPI, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenOpenAPI)
	if err != nil {
		t.Fatalf("read %s (create it with -update): %v", goldenOpenAPI, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the served OpenAPI document differs from %s; if the change is intended, run go test ./gateway -run TestOpenAPIGolden -update and commit the result", goldenOpenAPI)
	}
	if yaml := ts.do(t, "GET", "/openapi.yaml", "", nil); yaml.Status != 200 || !bytes.Contains(yaml.Body, []byte("openapi: 3.1.0")) {
		t.Errorf("GET /openapi.yaml: %d", yaml.Status)
	}
	if docs := ts.do(t, "GET", "/docs", "", nil); docs.Status != 200 || !bytes.Contains(docs.Body, []byte("<html")) {
		t.Errorf("GET /docs: %d", docs.Status)
	}
}
