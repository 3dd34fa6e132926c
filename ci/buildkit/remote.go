package buildkit

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/moby/buildkit/client"
	bkbuild "github.com/moby/buildkit/cmd/buildctl/build"
)

// TLS is how kgci proves itself to a remote buildkitd and checks the daemon's
// certificate: the flags and files of buildctl (--tlscacert, --tlscert,
// --tlskey, --tlsservername) and of buildx's remote driver.
type TLS struct {
	// CACert verifies the daemon's certificate. Empty: the system pool.
	CACert string
	// Cert and Key are the client's certificate and key (mutual TLS).
	Cert, Key string
	// ServerName overrides the name checked in the daemon's certificate
	// (default: the host of the address).
	ServerName string
}

// Enabled reports whether any TLS setting was given.
func (t TLS) Enabled() bool { return t != TLS{} }

// Validate names the missing half of a key pair and unreadable files here,
// before a connection attempt turns them into a gRPC error.
func (t TLS) Validate(addr string) error {
	if !t.Enabled() {
		return nil
	}
	if (t.Cert == "") != (t.Key == "") {
		return errors.New("--tlscert and --tlskey go together: a client certificate needs its key and the other way round")
	}
	for flag, f := range map[string]string{"--tlscacert": t.CACert, "--tlscert": t.Cert, "--tlskey": t.Key} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	if u, err := url.Parse(addr); err == nil && u.Scheme != "tcp" {
		return fmt.Errorf("TLS flags were given but the buildkitd address %s is not tcp://HOST:PORT; TLS applies to TCP connections only", addr)
	}
	return nil
}

func (t TLS) clientOpts(addr string) []client.ClientOpt {
	if !t.Enabled() {
		return nil
	}
	name := t.ServerName
	if name == "" {
		if u, err := url.Parse(addr); err == nil {
			name = u.Hostname()
		}
	}
	var opts []client.ClientOpt
	if t.CACert != "" {
		opts = append(opts, client.WithServerConfig(name, t.CACert))
	} else {
		opts = append(opts, client.WithServerConfigSystem(name))
	}
	if t.Cert != "" {
		opts = append(opts, client.WithCredentials(t.Cert, t.Key))
	}
	return opts
}

// tlsHint turns the usual failures against a TLS-protected daemon into the
// flag that fixes them.
func tlsHint(addr string, t TLS, err error) string {
	msg := err.Error()
	switch {
	case !t.Enabled() && strings.HasPrefix(addr, "tcp://") &&
		(strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF") || strings.Contains(msg, "first record does not look like")):
		return "; the daemon may require TLS: pass --tlscacert (and --tlscert/--tlskey for mutual TLS)"
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") ||
		// TLS 1.3: the daemon refuses a client without a certificate after
		// the handshake, so the client sees its next write fail.
		(t.Enabled() && t.Cert == "" && (strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset"))):
		return "; the daemon asks for a client certificate it trusts: pass --tlscert and --tlskey signed by the CA its --tlscacert names"
	case strings.Contains(msg, "certificate signed by unknown authority") || strings.Contains(msg, "x509"):
		return "; the daemon's certificate does not verify: pass the CA that signed it as --tlscacert (and --tlsservername if it names another host)"
	}
	return ""
}

// ParseCache parses --cache-to (export) or --cache-from (import) values in
// buildctl's syntax (type=registry,ref=REF / type=local,dest=DIR|src=DIR /
// type=gha[,scope=S], with the GitHub runtime taken from the environment as
// buildctl does).
func ParseCache(export bool, values []string) ([]client.CacheOptionsEntry, error) {
	for _, v := range values {
		if !strings.Contains(v, "type=") {
			return nil, fmt.Errorf("cache %q: give the type, e.g. type=registry,ref=HOST/REPO:TAG, type=local,dest=DIR or type=gha", v)
		}
	}
	parse, dirKey := bkbuild.ParseImportCache, "src"
	if export {
		parse, dirKey = bkbuild.ParseExportCache, "dest"
	}
	entries, err := parse(values)
	if err != nil {
		if strings.Contains(err.Error(), "type gha") {
			return nil, fmt.Errorf("%w (the GitHub Actions cache needs ACTIONS_CACHE_URL and ACTIONS_RUNTIME_TOKEN, which GitHub gives to actions only: expose them with crazy-max/ghaction-github-runtime, or pass url= and token=)", err)
		}
		return nil, err
	}
	// Checked here rather than by the client at solve time, after the
	// daemon was contacted.
	for _, e := range entries {
		switch {
		case e.Type == "local" && e.Attrs[dirKey] == "":
			return nil, fmt.Errorf("type=local needs %s=DIR", dirKey)
		case e.Type == "registry" && e.Attrs["ref"] == "":
			return nil, errors.New("type=registry needs ref=HOST/REPO[:TAG]")
		}
	}
	return entries, nil
}

// CacheFor gives image its own place in each cache: two images exported to
// one registry ref or local directory would overwrite each other's index.
// A registry ref gets the image name appended to its tag
// (REPO:TAG -> REPO:TAG-backend, REPO -> REPO:backend); a local directory a
// subdirectory; gha a scope suffix (buildkit's default scope is "buildkit").
func CacheFor(entries []client.CacheOptionsEntry, image string) []client.CacheOptionsEntry {
	out := make([]client.CacheOptionsEntry, 0, len(entries))
	for _, e := range entries {
		attrs := make(map[string]string, len(e.Attrs))
		for k, v := range e.Attrs {
			attrs[k] = v
		}
		switch e.Type {
		case "registry":
			if ref := attrs["ref"]; ref != "" {
				attrs["ref"] = refWithSuffix(ref, image)
			}
		case "local":
			for _, k := range []string{"dest", "src"} {
				if d := attrs[k]; d != "" {
					attrs[k] = strings.TrimRight(d, "/") + "/" + image
				}
			}
		case "gha", "s3", "azblob":
			scope := attrs["scope"]
			if scope == "" {
				scope = "kidney-genetics"
			}
			attrs["scope"] = scope + "-" + image
		}
		out = append(out, client.CacheOptionsEntry{Type: e.Type, Attrs: attrs})
	}
	return out
}

// refWithSuffix appends image to the tag of ref; a port's colon is not a tag.
func refWithSuffix(ref, image string) string {
	if at := strings.Index(ref, "@"); at >= 0 {
		ref = ref[:at] // a digest cannot be exported to; the tag is what counts
	}
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref + "-" + image
	}
	return ref + ":" + image
}
