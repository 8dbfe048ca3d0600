package record

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sortie-dev/sortie/store"
)

func TestSortKeyOrder(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	// Newest first, ties by id; times before 1970 and far apart must order too.
	want := []string{
		SortKey(base.Add(time.Nanosecond), "a"),
		SortKey(base, "a"),
		SortKey(base, "b"),
		SortKey(time.Unix(0, 0), "a"),
		SortKey(time.Unix(0, -1), "a"),
		SortKey(time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC), "a"),
	}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sorted keys mismatch (-want +got):\n%s", diff)
	}
	for _, id := range []string{"a", "x/y", "00000000000000000000/z"} {
		if got, err := SortKeyID(SortKey(base, id)); err != nil || got != id {
			t.Errorf("SortKeyID(SortKey(%q)) = %q, %v", id, got, err)
		}
	}
	if CompletedKey(base, "z") >= CompletedKey(base.Add(time.Nanosecond), "a") {
		t.Error("completed keys do not order oldest first")
	}
	if k := CompletedKey(base, "a"); !(k >= CompletedKeyBefore(base) && k < CompletedKeyBefore(base.Add(time.Nanosecond))) {
		t.Errorf("completed key %q is not within [before(t), before(t+1ns))", k)
	}
}

func TestCursor(t *testing.T) {
	t.Parallel()
	key := SortKey(time.Now(), "p1")
	got, err := DecodeCursor(EncodeCursor(key))
	if err != nil || got != key {
		t.Errorf("DecodeCursor(EncodeCursor(%q)) = %q, %v", key, got, err)
	}
	for _, bad := range []string{"!!", EncodeCursor("p1"), EncodeCursor("1234/p1"), EncodeCursor("abcdefghijklmnopqrst/p1")} {
		if _, err := DecodeCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

func TestFilterIndexes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    store.PipelineFilter
		want []string
	}{
		{"everything", store.PipelineFilter{}, []string{"all"}},
		{"application", store.PipelineFilter{Application: "a:b c"}, []string{"app:a%3Ab+c"}},
		{"statuses, repeated", store.PipelineFilter{Statuses: []string{"RUNNING", "QUEUED", "RUNNING"}}, []string{"status:RUNNING", "status:QUEUED"}},
		{"both", store.PipelineFilter{Application: "web", Statuses: []string{"PAUSED"}}, []string{"app:web:status:PAUSED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, FilterIndexes(tt.f)); diff != "" {
				t.Errorf("FilterIndexes mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff([]string{"all", "app:web", "status:PAUSED", "app:web:status:PAUSED"}, IndexNames("web", "PAUSED")); diff != "" {
		t.Errorf("IndexNames mismatch (-want +got):\n%s", diff)
	}
}
