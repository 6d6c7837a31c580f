package bunstore

import (
	"errors"
	"reflect"
	"strings"
)

// ErrTableLayout is returned by Migrate when the table exists with columns
// the store cannot work with (another library's table under the same name).
var ErrTableLayout = errors.New("bunstore: the session table has another layout")

// isMySQLDuplicate reports whether err is MySQL's ER_DUP_ENTRY (1062). The
// store does not import a MySQL driver: it reads the Number field of
// go-sql-driver/mysql's *MySQLError (or any error with a uint16 Number
// field) and falls back to the message.
func isMySQLDuplicate(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct {
			if f := v.FieldByName("Number"); f.IsValid() && f.Kind() == reflect.Uint16 {
				return f.Uint() == 1062
			}
		}
	}
	return strings.Contains(err.Error(), "Error 1062")
}

// sqlState returns the SQLSTATE of a PostgreSQL error from pgx or lib/pq,
// or "".
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}
