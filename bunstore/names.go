package bunstore

import (
	"errors"
	"fmt"
)

// ErrInvalidName is wrapped by the error New returns for a schema or table
// name that is not a plain identifier. No SQL is ever built from such a name.
var ErrInvalidName = errors.New("bunstore: invalid identifier")

// maxNameLen is the longest name accepted: PostgreSQL truncates identifiers
// longer than 63 bytes, and MySQL allows 64.
const maxNameLen = 63

// validName reports why name is not a plain identifier
// ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes), or nil if it is one.
func validName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalidName, kind)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%w: %s name is %d bytes long, at most %d are allowed", ErrInvalidName, kind, len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return fmt.Errorf("%w: %s name %q: byte %d (%q) is not allowed; use letters, digits and underscores, not starting with a digit",
				ErrInvalidName, kind, name, i, c)
		}
	}
	return nil
}
