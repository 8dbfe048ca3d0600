package redisstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/sortie-dev/sortie/store/redistest"
)

// BenchmarkFailures compares the token endpoint's check of its two limits as two reads of one
// key each (as it was) with one read of both: on a private Redis, and on a cluster with the
// two keys on one node and on two.
func BenchmarkFailures(b *testing.B) {
	keysOf := func(addr string) []string {
		return []string{"token:c:someclientid|a:" + addr, "token:a:" + addr}
	}
	c := redistest.NewCluster(b, 3)
	// The first address whose two keys lie on one node, and the first whose keys lie on two.
	byNodes := map[bool][]string{}
	for i := 0; len(byNodes) < 2; i++ {
		keys := keysOf(fmt.Sprintf("192.0.2.%d", i))
		if split := c.NodeOf(failureKey(keys[0])) != c.NodeOf(failureKey(keys[1])); byNodes[split] == nil {
			byNodes[split] = keys
		}
	}
	standalone, err := Open(b.Context(), redistest.New(b).URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { standalone.Close() })
	cluster, err := OpenCluster(b.Context(), c.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cluster.Close() })

	cases := []struct {
		name string
		s    *Store
		keys []string
	}{
		{"standalone", standalone, keysOf("192.0.2.1")},
		{"cluster, one node", cluster, byNodes[false]},
		{"cluster, two nodes", cluster, byNodes[true]},
	}
	for _, tc := range cases {
		for _, k := range tc.keys {
			if _, _, err := tc.s.AddFailure(b.Context(), k, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(tc.name+"/two calls", func(b *testing.B) {
			for b.Loop() {
				for _, k := range tc.keys {
					if got, err := tc.s.Failures(b.Context(), k); err != nil || got[0].Count != 1 {
						b.Fatal(got, err)
					}
				}
			}
		})
		b.Run(tc.name+"/one call", func(b *testing.B) {
			for b.Loop() {
				if got, err := tc.s.Failures(b.Context(), tc.keys...); err != nil || got[0].Count != 1 || got[1].Count != 1 {
					b.Fatal(got, err)
				}
			}
		})
	}
}
