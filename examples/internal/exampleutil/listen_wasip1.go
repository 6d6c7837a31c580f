//go:build wasip1

package exampleutil

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// maxPreopenFD bounds the search for the pre-opened socket: stdio is 0-2,
// then come the runtime's mounted directories, then its -listen sockets.
const maxPreopenFD = 64

// listen returns the TCP listener the WebAssembly runtime pre-opened (for
// wazero: `wazero run -listen 127.0.0.1:3000 ...`); a wasip1 module cannot
// open a listening socket itself. addr is only used in the error.
func listen(addr string) (net.Listener, error) {
	for fd := 3; fd < maxPreopenFD; fd++ {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			if errors.Is(err, syscall.EBADF) {
				break // past the last pre-opened descriptor
			}
			continue
		}
		if st.Filetype != syscall.FILETYPE_SOCKET_STREAM {
			continue // a mounted directory: never wrap it in an os.File (closing it would unmount it)
		}
		// The runtime hands the socket over in blocking mode; a blocking
		// accept would freeze the whole module (one thread), so make it
		// non-blocking before Go's poller takes it.
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(fd), "listener")
		ln, err := net.FileListener(f)
		f.Close() // the listener keeps its own reference
		if err != nil {
			return nil, err
		}
		// WASI cannot tell a socket's address; the runtime was told it, and
		// so should ADDR be, for the "listening on" line.
		if a, err := net.ResolveTCPAddr("tcp", addr); err == nil && a.Port != 0 {
			return addrListener{ln, a}, nil
		}
		return ln, nil
	}
	return nil, errors.New("no pre-opened listening socket: run the module with the runtime's listen option, e.g. `wazero run -listen " + addr + " ...`")
}

type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }
