package exampleutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRequireEnv(t *testing.T) {
	t.Setenv("SQLSESSIONS_TEST_VAR", "")
	_, err := RequireEnv("SQLSESSIONS_TEST_VAR", "x://example")
	if !errors.Is(err, ErrMissingEnv) || err.Error() != "SQLSESSIONS_TEST_VAR is not set; set it to e.g. x://example" {
		t.Errorf("missing: %v", err)
	}
	t.Setenv("SQLSESSIONS_TEST_VAR", " value ")
	if v, err := RequireEnv("SQLSESSIONS_TEST_VAR", "x"); err != nil || v != "value" {
		t.Errorf("set: %q, %v", v, err)
	}
}

func TestAddr(t *testing.T) {
	t.Setenv("ADDR", "")
	if got := Addr(); got != "127.0.0.1:3000" {
		t.Errorf("default Addr = %q", got)
	}
	t.Setenv("ADDR", "0.0.0.0:8080")
	if got := Addr(); got != "0.0.0.0:8080" {
		t.Errorf("Addr = %q", got)
	}
}

func TestRunMain(t *testing.T) {
	var stderr bytes.Buffer
	if code := runMain("demo", func(ctx context.Context) error { return nil }, &stderr); code != 0 || stderr.Len() != 0 {
		t.Errorf("success: code %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	multi := fmt.Errorf("connect:\n\tdial tcp: refused\n  retrying")
	if code := runMain("demo", func(ctx context.Context) error { return multi }, &stderr); code != 1 {
		t.Errorf("failure: code %d, want 1", code)
	}
	if got, want := stderr.String(), "demo: connect: dial tcp: refused retrying\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}
