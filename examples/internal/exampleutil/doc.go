// Package exampleutil holds the plumbing the example servers share, so each
// example's main.go shows only what a user of sqlsessions writes: reading
// the environment (DATABASE_URL, ADDR), printing a failure as one line with a non-zero
// exit status, and serving until Ctrl-C or SIGTERM with a graceful shutdown
// that also stops background tasks such as expired-session deletion.
package exampleutil
