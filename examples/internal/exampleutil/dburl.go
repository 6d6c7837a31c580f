package exampleutil

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// ErrBadURL is wrapped by the errors of the URL conversions.
var ErrBadURL = errors.New("bad database URL")

// MySQLDSN converts a MySQL URL in the form sqlx (the Rust seed) accepts,
//
//	mysql://user:password@host:port/database?ssl-mode=disabled
//
// into a go-sql-driver/mysql DSN, with parseTime=true and loc=UTC so that
// DATETIME columns scan into time.Time in UTC. User and password may be
// percent-encoded; the port defaults to 3306 and the host to localhost.
// Supported parameters: ssl-mode (disabled, preferred, required,
// verify_ca, verify_identity), charset, collation and socket (a Unix socket
// path used instead of host:port); any other parameter is an error rather
// than being silently ignored.
func MySQLDSN(rawURL string) (string, error) {
	if !strings.Contains(rawURL, "://") {
		return "", fmt.Errorf("%w: want mysql://user:password@host:port/database", ErrBadURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadURL, redactErr(err, rawURL))
	}
	if u.Scheme != "mysql" && u.Scheme != "mariadb" {
		return "", fmt.Errorf("%w: %q: want mysql://user:password@host:port/database", ErrBadURL, redactURL(u))
	}
	if u.Opaque != "" {
		return "", fmt.Errorf("%w: %q: want mysql://user:password@host:port/database", ErrBadURL, redactURL(u))
	}
	cfg := mysql.NewConfig()
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "localhost"
	}
	if port == "" {
		port = "3306"
	}
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort(host, port)
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if strings.Contains(cfg.DBName, "/") {
		return "", fmt.Errorf("%w: %q: the path must be a single database name", ErrBadURL, redactURL(u))
	}

	for key, vals := range u.Query() {
		v := vals[len(vals)-1]
		switch strings.ReplaceAll(strings.ToLower(key), "_", "-") {
		case "ssl-mode", "sslmode":
			switch strings.ToLower(v) {
			case "disabled":
				cfg.TLSConfig = "false"
			case "preferred":
				cfg.TLSConfig = "preferred"
			case "required":
				cfg.TLSConfig = "skip-verify" // encrypted, certificate not checked
			case "verify-ca", "verify_ca", "verify-identity", "verify_identity":
				cfg.TLSConfig = "true"
			default:
				return "", fmt.Errorf("%w: ssl-mode=%q: want disabled, preferred, required, verify_ca or verify_identity", ErrBadURL, v)
			}
		case "charset":
			cfg.Params = setParam(cfg.Params, "charset", v)
		case "collation":
			cfg.Collation = v
		case "socket":
			cfg.Net = "unix"
			cfg.Addr = v
		default:
			return "", fmt.Errorf("%w: unsupported parameter %q (supported: ssl-mode, charset, collation, socket)", ErrBadURL, key)
		}
	}
	dsn := cfg.FormatDSN()
	// UTC is the driver's default location, so FormatDSN leaves it out;
	// spell it out for whoever reads the DSN.
	if !strings.Contains(dsn, "loc=") {
		dsn += "&loc=UTC"
	}
	return dsn, nil
}

func setParam(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// CheckPostgresURL reports whether rawURL is a postgres:// or
// postgresql:// URL, the form both sqlx and pgx accept.
func CheckPostgresURL(rawURL string) error {
	if !strings.Contains(rawURL, "://") {
		return fmt.Errorf("%w: want postgres://user:password@host:port/database", ErrBadURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadURL, redactErr(err, rawURL))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("%w: %q: want postgres://user:password@host:port/database", ErrBadURL, redactURL(u))
	}
	return nil
}

// redactURL hides the password of u.
func redactURL(u *url.URL) string {
	return u.Redacted()
}

// redactErr returns err's message with the password of rawURL hidden (a
// *url.Error quotes the whole URL).
func redactErr(err error, rawURL string) string {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = ue.Op + " URL: " + ue.Err.Error()
	}
	if at := strings.LastIndex(rawURL, "@"); at >= 0 {
		if colon := strings.Index(rawURL[:at], "://"); colon >= 0 {
			creds := rawURL[colon+3 : at]
			if _, pw, ok := strings.Cut(creds, ":"); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
		}
	}
	return msg
}
