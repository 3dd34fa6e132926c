package checks

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kidney-genetics/kidney-genetics-db/ci/dockerstack"
)

// newGuardedClient returns a client that can only reach what this run owns: loopback
// addresses (the ports the stack published on 127.0.0.1). A check that follows a redirect
// or a configured URL anywhere else fails instead of touching another machine.
func newGuardedClient(e *Env) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // never via a proxy: the targets are local
		DialContext:         e.dial,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     10 * time.Second,
		// Checks that look at Content-Encoding ask for gzip themselves.
		DisableCompression: true,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// dial is the only way checks open connections.
func (e *Env) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if !e.allowedHost(host) {
		return nil, fmt.Errorf("refusing to connect to %s: the checker only targets 127.0.0.1 (the ports this run published)", addr)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, addr)
}

func (e *Env) allowedHost(host string) bool {
	return dockerstack.LoopbackOnly(host)
}

// response is a fetched HTTP response with its body read.
type response struct {
	*http.Response
	Body []byte
}

func (e *Env) get(ctx context.Context, u string, header map[string]string) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.HTTP().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", u, err)
	}
	return &response{Response: resp, Body: b}, nil
}

// snippet shortens a body for messages.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
