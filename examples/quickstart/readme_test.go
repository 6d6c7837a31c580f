package main

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEShowsThisProgram fails when README.md's first Go snippet is not
// main.go from its package clause on: the snippet must compile as written.
func TestREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatalf("reading the repository's README: %v", err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "\n```go\n")
	block, _, closed := strings.Cut(block, "\n```\n")
	if !ok || !closed {
		t.Fatal("README.md has no ```go block")
	}
	i := strings.Index(string(src), "package main\n")
	if i < 0 {
		t.Fatal("main.go has no package clause")
	}
	want := strings.TrimSuffix(string(src[i:]), "\n")
	if block != want {
		gotLines, wantLines := strings.Split(block, "\n"), strings.Split(want, "\n")
		for n := 0; n < len(gotLines) || n < len(wantLines); n++ {
			var g, w string
			if n < len(gotLines) {
				g = gotLines[n]
			}
			if n < len(wantLines) {
				w = wantLines[n]
			}
			if g != w {
				t.Fatalf("README.md's first ```go block differs from examples/quickstart/main.go (from `package main` on) at its line %d:\nREADME:  %q\nmain.go: %q", n+1, g, w)
			}
		}
	}
}
