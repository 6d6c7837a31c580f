package exampleutil

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// DefaultAddr is the listen address unless ADDR says otherwise: the one the
// seed's examples use.
const DefaultAddr = "127.0.0.1:3000"

// Addr returns the listen address from ADDR, or DefaultAddr.
func Addr() string {
	if a := strings.TrimSpace(os.Getenv("ADDR")); a != "" {
		return a
	}
	return DefaultAddr
}

// ErrMissingEnv is wrapped by RequireEnv's error.
var ErrMissingEnv = errors.New("environment variable not set")

type missingEnvError struct{ name, example string }

func (e missingEnvError) Error() string {
	return fmt.Sprintf("%s is not set; set it to e.g. %s", e.name, e.example)
}

func (e missingEnvError) Unwrap() error { return ErrMissingEnv }

// RequireEnv returns the value of the environment variable name, or an error
// (wrapping ErrMissingEnv) saying it is missing and showing example, a value
// of the right form.
func RequireEnv(name, example string) (string, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return "", missingEnvError{name, example}
	}
	return v, nil
}

// Main runs run with a context that is cancelled on Ctrl-C (SIGINT) or
// SIGTERM and exits the process: status 0 when run returns nil, otherwise
// status 1 after printing "<name>: <error>" as one line on stderr. After the
// first signal the default handling is restored, so a second Ctrl-C stops a
// shutdown that hangs.
func Main(name string, run func(ctx context.Context) error) {
	os.Exit(runMain(name, run, os.Stderr))
}

func runMain(name string, run func(ctx context.Context) error, stderr io.Writer) int {
	ctx, stop := notifyShutdown(context.Background())
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", name, OneLine(err))
		return 1
	}
	return 0
}

// OneLine renders err on a single line (some driver errors span several).
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// PingTimeout bounds Ping.
const PingTimeout = 15 * time.Second

// Ping checks that db can be reached, within PingTimeout, so an unreachable
// server is reported as such before anything else runs.
func Ping(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("cannot reach the database: %w", err)
	}
	return nil
}
