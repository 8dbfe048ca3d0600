package main

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCommandsConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		sizes []int
		err   string
	}{
		{name: "defaults", sizes: []int{10, 1000, 10000}},
		{name: "explicit sizes sorted", args: []string{"-sizes", "100, 10,100"}, sizes: []int{10, 100}},
		{name: "bad size", args: []string{"-sizes", "10,x"}, err: `-sizes: "x" is not a positive count`},
		{name: "no requests", args: []string{"-requests", "0"}, err: "must be positive"},
		{name: "stray argument", args: []string{"extra"}, err: "unexpected arguments: extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseCommandsConfig(tt.args, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.sizes, c.Sizes); diff != "" {
				t.Errorf("sizes (-want +got):\n%s", diff)
			}
		})
	}
}
