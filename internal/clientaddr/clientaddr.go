// Package clientaddr names the client of a request the way every listener records and
// counts it: by its IP address, without the port, so that failures and limits follow the
// address and not each new connection.
package clientaddr

import "net"

// IP returns the address part of a host:port such as http.Request.RemoteAddr ("[::1]:443"
// gives "::1"). A value without a port is returned unchanged.
func IP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}
