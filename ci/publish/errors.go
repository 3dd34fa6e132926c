package publish

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// explain turns the registry client's errors into ones that name the host
// and say what to do. The wrapped error is kept for errors.Is/As.
func explain(err error, host string, insecure bool) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("registry %s rejected the credentials (HTTP 401): set %s and %s to an account that may push there, or run `docker login %s`: %w",
				host, EnvUsername, EnvPassword, host, err)
		case http.StatusForbidden:
			return fmt.Errorf("registry %s refused the push (HTTP 403): the account may not write to this repository; check the namespace (--namespace) and the token's scopes (write:packages on ghcr.io): %w",
				host, err)
		}
		return fmt.Errorf("registry %s answered HTTP %d: %w", host, terr.StatusCode, err)
	}

	msg := err.Error()
	var uaErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &uaErr) || errors.As(err, &hostErr) || strings.Contains(msg, "x509:") {
		return fmt.Errorf("TLS certificate of registry %s is not trusted: add its CA to the system store (or SSL_CERT_FILE); for a throw-away local registry only, use --insecure: %w", host, err)
	}
	if strings.Contains(msg, "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("registry %s speaks plain HTTP: pass --insecure to push to it: %w", host, err)
	}
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) || errors.As(err, &netErr) {
		hint := "check --registry, that the registry is running and that this machine can reach it (firewall, HTTPS_PROXY/NO_PROXY)"
		if !insecure {
			hint += "; a plain-HTTP registry on a non-loopback address also needs --insecure"
		}
		return fmt.Errorf("cannot reach registry %s: %s: %w", host, hint, err)
	}
	return fmt.Errorf("push to registry %s: %w", host, err)
}
