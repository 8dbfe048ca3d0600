package agent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

// FuzzParseManifests: any input gives objects with a kind and a name, or an invalid error.
func FuzzParseManifests(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n",
		"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 3}\n---\n",
		`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}]}`,
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: x\n",
		"---\n---\n",
		"kind: [",
		"apiVersion: v1\nkind: List\nitems: 3\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := parseManifests(data)
		if err != nil {
			var invalid *invalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("parseManifests error %v is not an invalid-input error", err)
			}
			return
		}
		for _, o := range objs {
			if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
				t.Fatalf("object without apiVersion, kind or name: %v", o.Object)
			}
			r, err := toResource(o)
			if err != nil {
				t.Fatalf("toResource: %v", err)
			}
			if isSecret(o) && (sanitized(o)["data"] != nil || sanitized(o)["stringData"] != nil) {
				t.Fatalf("Secret data survives sanitizing: %s", r.GetObject())
			}
		}
	})
}

// FuzzCommand: any message from the hub that decodes to a Command gets one result with its
// id and an outcome, and never a panic.
func FuzzCommand(f *testing.F) {
	ref := &hubv1.ObjectReference{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps", Name: "c"}
	for _, cmd := range []*hubv1.Command{
		{Id: "1", Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: ref}}},
		{Id: "2", Action: &hubv1.Command_List{List: &hubv1.ListAction{Selector: &hubv1.ResourceSelector{ApiVersion: "v1", Kind: "ConfigMap", LabelSelector: "a=b"}}}},
		{Id: "3", Action: &hubv1.Command_Patch{Patch: &hubv1.PatchAction{Ref: ref, Type: hubv1.PatchAction_TYPE_MERGE, Patch: []byte(`{"data":{"k":"v"}}`)}}},
		{Id: "4", Action: &hubv1.Command_Patch{Patch: &hubv1.PatchAction{Ref: ref, Type: hubv1.PatchAction_TYPE_JSON, Patch: []byte(`[{"op":"add","path":"/data","value":{}}]`), Subresource: "status"}}},
		{Id: "5", Action: &hubv1.Command_Delete{Delete: &hubv1.DeleteAction{Ref: ref}}},
		{Id: "6", Action: &hubv1.Command_ListNamespaces{ListNamespaces: &hubv1.ListNamespacesAction{}}},
		{Id: "7", Action: &hubv1.Command_Watch{Watch: &hubv1.WatchAction{WatchId: "w", Selectors: []*hubv1.ResourceSelector{{ApiVersion: "v1", Kind: "ConfigMap", Namespace: "apps"}}}}},
		{Id: "8", Action: &hubv1.Command_Unwatch{Unwatch: &hubv1.UnwatchAction{WatchId: "w"}}},
		{Id: "9", Action: &hubv1.Command_Apply{Apply: &hubv1.ApplyAction{Manifests: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: n\n"), Namespace: "apps"}}},
		{Id: "10", Action: &hubv1.Command_Get{Get: &hubv1.GetAction{Ref: &hubv1.ObjectReference{ApiVersion: "///", Kind: "X"}}}},
		{Id: "11"},
	} {
		b, err := proto.Marshal(&hubv1.ConnectResponse{Message: &hubv1.ConnectResponse_Command{Command: cmd}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg hubv1.ConnectResponse
		if proto.Unmarshal(data, &msg) != nil || msg.GetCommand() == nil {
			return
		}
		cmd := msg.GetCommand()
		cluster := newFakeCluster([]runtime.Object{obj("v1", "ConfigMap", "apps", "c", nil)}...)
		m, err := newMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.DiscardHandler)
		e := newExecutor(log, newKube(cluster.disco, cluster.dyn), m, time.Now)
		sess := &session{out: make(chan *hubv1.ConnectRequest, 1024), watches: newWatchSet(log, m), metrics: m}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res := e.execute(ctx, ctx, sess, cmd)
		cancel()
		sess.watches.stopAll()
		if res.GetCommandId() != cmd.GetId() || res.GetOutcome() == hubv1.CommandResult_OUTCOME_UNSPECIFIED {
			t.Fatalf("result %v for command %v", res, cmd)
		}
		if res.GetOutcome() == hubv1.CommandResult_OUTCOME_FAILED && res.GetError().GetMessage() == "" {
			t.Fatalf("a failure without a message: %v", res)
		}
	})
}
