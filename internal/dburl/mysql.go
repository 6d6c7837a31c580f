package dburl

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// sslModes maps sqlx's ssl-mode values to the driver's tls parameter.
var sslModes = map[string]string{
	"disabled":        "false",
	"preferred":       "preferred",
	"required":        "skip-verify", // encrypted, certificate not checked
	"verify-ca":       "true",
	"verify-identity": "true",
}

// sqlxOnly are sqlx parameters with no driver equivalent: passed on, the
// driver would send them to the server as system variables, which fails at
// connect time with a confusing message.
var sqlxOnly = map[string]string{
	"ssl-ca":                   "register a TLS config with mysql.RegisterTLSConfig and pass tls=NAME",
	"ssl-cert":                 "register a TLS config with mysql.RegisterTLSConfig and pass tls=NAME",
	"ssl-key":                  "register a TLS config with mysql.RegisterTLSConfig and pass tls=NAME",
	"statement-cache-capacity": "the store prepares its own statements",
}

// MySQLConfig converts a MySQL URL in the form sqlx (the Rust seed) accepts,
//
//	mysql://user:password@host:port/database?ssl-mode=disabled   (also mariadb://)
//
// into a go-sql-driver/mysql configuration with parseTime=true and loc=UTC,
// so that DATETIME columns scan into time.Time in UTC (the URL may repeat
// them; any other value is an error, since the sessions' expiries and every
// query of ours on them assume UTC). User and password may be
// percent-encoded; the host defaults to localhost and the port to 3306.
//
// Parameters: sqlx's ssl-mode (disabled, preferred, required, verify_ca,
// verify_identity) and socket (a Unix socket path used instead of
// host:port); the driver's own parameters (tls, timeout, charset,
// collation, ...: https://github.com/go-sql-driver/mysql#parameters). Any
// other parameter is an error, not a system variable sent to the server at
// each connect (a typo would only show there); sqlx's ssl-ca, ssl-cert,
// ssl-key and statement-cache-capacity say what to do instead. Errors never
// contain the password.
func MySQLConfig(rawURL string) (*mysql.Config, error) {
	s := strings.TrimSpace(rawURL)
	if !hasScheme(s, "mysql://") && !hasScheme(s, "mariadb://") {
		return nil, fmt.Errorf("%w: want mysql://user:password@host:port/database", ErrBadURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s (check that special characters in the password are percent-encoded)", ErrBadURL, redactErr(err, s))
	}
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return nil, fmt.Errorf("%w: %q: the path must be a single database name", ErrBadURL, u.Redacted())
	}

	q := u.Query()
	params := url.Values{}
	network, addr := "tcp", u.Host
	for key, vals := range q {
		v := vals[len(vals)-1]
		switch norm := strings.ReplaceAll(strings.ToLower(key), "_", "-"); {
		case norm == "ssl-mode" || norm == "sslmode":
			tls, ok := sslModes[strings.ReplaceAll(strings.ToLower(v), "_", "-")]
			if !ok {
				return nil, fmt.Errorf("%w: ssl-mode=%q: want disabled, preferred, required, verify_ca or verify_identity", ErrBadURL, v)
			}
			if q.Has("tls") {
				return nil, fmt.Errorf("%w: both ssl-mode and tls are set: keep one", ErrBadURL)
			}
			params.Set("tls", tls)
		case norm == "socket":
			network, addr = "unix", v
		case sqlxOnly[norm] != "":
			return nil, fmt.Errorf("%w: unsupported parameter %q: %s", ErrBadURL, key, sqlxOnly[norm])
		case key == "parseTime":
			if b, err := strconv.ParseBool(v); err != nil || !b {
				return nil, fmt.Errorf("%w: parseTime=%q: sessions need parseTime=true (the default here)", ErrBadURL, v)
			}
		case key == "loc":
			if v != "UTC" {
				return nil, fmt.Errorf("%w: loc=%q: sessions need loc=UTC (the default here)", ErrBadURL, v)
			}
		default:
			params[key] = vals
		}
	}
	if network == "tcp" {
		switch {
		case addr == "":
			addr = "localhost:3306"
		case u.Port() == "":
			addr = net.JoinHostPort(u.Hostname(), "3306")
		}
	}
	// The driver parses its own parameters (it knows them all). The address
	// goes in too, so that tls=true checks the certificate against this
	// host; user, password and database, which a DSN string could not carry
	// safely, are set afterwards.
	cfg, err := mysql.ParseDSN(network + "(" + addr + ")/?" + params.Encode())
	if err != nil {
		return nil, fmt.Errorf("%w: parameters: %v", ErrBadURL, err)
	}
	// What the driver does not know it would send to the server as a
	// system variable (SET name=value) at each connect: a typo would only
	// show there. Refuse it now; a DSN can still carry system variables.
	if len(cfg.Params) > 0 {
		name := slices.Sorted(maps.Keys(cfg.Params))[0]
		return nil, fmt.Errorf("%w: unsupported parameter %q (not a go-sql-driver/mysql parameter: https://github.com/go-sql-driver/mysql#parameters)", ErrBadURL, name)
	}
	cfg.DBName = db
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	return cfg, nil
}

// MySQLDSN is MySQLConfig as a go-sql-driver/mysql DSN string, spelling out
// parseTime=true&loc=UTC for whoever reads it.
func MySQLDSN(rawURL string) (string, error) {
	cfg, err := MySQLConfig(rawURL)
	if err != nil {
		return "", err
	}
	dsn := cfg.FormatDSN()
	// UTC is the driver's default location, so FormatDSN leaves it out.
	if !strings.Contains(dsn, "loc=") {
		sep := "&"
		if !strings.Contains(dsn, "?") {
			sep = "?"
		}
		dsn += sep + "loc=UTC"
	}
	return dsn, nil
}

// NormalizeMySQL returns a go-sql-driver/mysql DSN for s: a mysql:// or
// mariadb:// URL is converted by MySQLDSN, anything else is taken for a DSN
// already and returned as it is (a test may want a DSN with other
// settings, e.g. loc or time_zone).
func NormalizeMySQL(s string) (string, error) {
	if k, err := KindOf(s); err == nil && k == MySQL {
		return MySQLDSN(s)
	}
	return s, nil
}

// MySQLURLFromDSN turns a go-sql-driver/mysql DSN back into the
// mysql://user:pass@host:port/db URL an operator would give our commands (a
// Unix socket becomes ?socket=PATH). Only the address, credentials and
// database carry over; the DSN's other parameters are dropped.
func MySQLURLFromDSN(dsn string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("%w: not a go-sql-driver/mysql DSN: %v", ErrBadURL, err)
	}
	u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
	if cfg.Passwd != "" {
		u.User = url.UserPassword(cfg.User, cfg.Passwd)
	} else if cfg.User != "" {
		u.User = url.User(cfg.User)
	}
	if cfg.Net == "unix" {
		u.Host = ""
		u.RawQuery = url.Values{"socket": {cfg.Addr}}.Encode()
	}
	return u.String(), nil
}
