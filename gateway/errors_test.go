package gateway_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/store/redistest"
)

func TestErrorContract(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	tok := ts.adminToken(t)
	if r := ts.do(t, "POST", "/credentials", tok, `{"name":"dup","roles":[]}`); r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	credentialsBefore := ts.do(t, "GET", "/credentials", tok, nil).Body

	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		status     int
		wantFields []string // metadata.field of each problem, in order
	}{
		{name: "malformed JSON", method: "POST", path: "/credentials", body: `{"name":`, status: http.StatusBadRequest},
		{name: "JSON of the wrong shape", method: "POST", path: "/credentials", body: `[1,2]`, status: http.StatusUnprocessableEntity},
		{name: "missing and unknown fields", method: "POST", path: "/credentials", body: `{"roles":[],"colour":"red"}`, status: http.StatusUnprocessableEntity, wantFields: []string{"name", "colour"}},
		{name: "unknown roles, every one reported", method: "POST", path: "/credentials", body: `{"name":"x","roles":["Deployments Full Access","Nope","Also Nope"]}`, status: http.StatusUnprocessableEntity, wantFields: []string{"roles[1]", "roles[2]"}},
		{name: "bad environment name", method: "POST", path: "/environments", body: `{"name":"no spaces allowed"}`, status: http.StatusUnprocessableEntity, wantFields: []string{"name"}},
		{name: "unknown role on PUT", method: "PUT", path: "/credentials/" + ts.admin.Admin.ClientID + "/roles", body: `["Root"]`, status: http.StatusUnprocessableEntity, wantFields: []string{"roles[0]"}},
		{name: "duplicate credential name", method: "POST", path: "/credentials", body: `{"name":"dup","roles":[]}`, status: http.StatusConflict},
		{name: "duplicate environment name", method: "POST", path: "/environments", body: `{"name":"default"}`, status: http.StatusConflict},
		{name: "unknown id", method: "DELETE", path: "/credentials/nope", status: http.StatusNotFound},
		{name: "unknown id roles", method: "GET", path: "/credentials/nope/roles", status: http.StatusNotFound},
		{name: "body over 10 MiB", method: "POST", path: "/credentials", body: `{"name":"` + strings.Repeat("a", 10<<20) + `"}`, status: http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := wantError(t, tc.name, ts.do(t, tc.method, tc.path, tok, tc.body), tc.status)
			if tc.wantFields != nil {
				var got []string
				for _, it := range e.Errors {
					f, _ := it.Metadata["field"].(string)
					got = append(got, f)
				}
				if diff := cmp.Diff(tc.wantFields, got); diff != "" {
					t.Errorf("fields (-want +got):\n%s\nbody: %+v", diff, e)
				}
			}
		})
	}

	t.Run("unsupported media type", func(t *testing.T) {
		req, _ := http.NewRequest("POST", ts.URL+"/credentials", strings.NewReader("name=x"))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		wantError(t, "415", response{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes()}, http.StatusUnsupportedMediaType)
	})

	t.Run("bad input changed nothing", func(t *testing.T) {
		if after := ts.do(t, "GET", "/credentials", tok, nil).Body; !bytes.Equal(credentialsBefore, after) {
			t.Errorf("credentials changed:\nbefore %s\nafter  %s", credentialsBefore, after)
		}
	})

	t.Run("the secret is never listed", func(t *testing.T) {
		if bytes.Contains(credentialsBefore, []byte(ts.admin.Secret)) || bytes.Contains(credentialsBefore, []byte("ecret")) {
			t.Errorf("credential list carries a secret: %s", credentialsBefore)
		}
	})
}

// TestRedisOutage: while Redis is down requests get 503 with the error contract; service
// resumes without a restart when it is back.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	rds := redistest.New(t)
	ts := startServer(t, serverOptions{redisURL: rds.URL()})
	tok := ts.adminToken(t)
	if r := ts.do(t, "GET", "/credentials", tok, nil); r.Status != 200 {
		t.Fatalf("before the outage: %d %s", r.Status, r.Body)
	}

	rds.Stop()
	e := wantError(t, "during the outage", ts.do(t, "GET", "/credentials", tok, nil), http.StatusServiceUnavailable)
	if strings.Contains(e.Errors[0].Message, rds.URL()) || strings.Contains(e.Errors[0].Message, "unix") {
		t.Errorf("503 leaks the store address: %q", e.Errors[0].Message)
	}
	if r := ts.do(t, "GET", "/readyz", "", nil); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: %d", r.Status)
	}
	if r := ts.do(t, "GET", "/healthz", "", nil); r.Status != http.StatusOK {
		t.Errorf("/healthz during the outage: %d (the process is alive)", r.Status)
	}
	r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/ListCredentials", tok, "{}")
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "unavailable") {
		t.Errorf("Connect during the outage: %d %s", r.Status, r.Body)
	}

	rds.Start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := ts.do(t, "GET", "/credentials", tok, nil)
		if r.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis came back: %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := ts.do(t, "GET", "/readyz", "", nil); r.Status != http.StatusOK {
		t.Errorf("/readyz after recovery: %d", r.Status)
	}
}
