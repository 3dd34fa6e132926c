package checks

import (
	"encoding/json"
	"fmt"
	"strings"
)

// ParseEnvConfig reads the object literal assigned to window._env_ in env-config.js, as
// written by docker-entrypoint.sh: `window._env_ = { KEY: "json-escaped", ... };`.
//
// It is a small parser for exactly that subset of JavaScript (identifier or quoted keys,
// double-quoted string values with JSON escapes, optional trailing comma, comments), not a
// regular expression: values may contain ", }, // or \u escapes, and a hostile value
// must not be able to make the checker read a different key.
func ParseEnvConfig(src string) (map[string]string, error) {
	i := strings.Index(src, "window._env_")
	if i < 0 {
		return nil, fmt.Errorf("no `window._env_` assignment")
	}
	p := &jsParser{s: src, i: i + len("window._env_")}
	p.space()
	if !p.eat('=') {
		return nil, p.errorf("want '=' after window._env_")
	}
	p.space()
	if !p.eat('{') {
		return nil, p.errorf("want an object literal '{'")
	}
	out := map[string]string{}
	for {
		p.space()
		if p.eat('}') {
			break
		}
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		p.space()
		if !p.eat(':') {
			return nil, p.errorf("want ':' after key %q", key)
		}
		p.space()
		val, err := p.str()
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", key, err)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("key %s appears twice", key)
		}
		out[key] = val
		p.space()
		if p.eat(',') {
			continue
		}
		p.space()
		if p.eat('}') {
			break
		}
		return nil, p.errorf("want ',' or '}' after the value of %s", key)
	}
	p.space()
	p.eat(';')
	p.space()
	if p.i < len(p.s) {
		return nil, p.errorf("unexpected text after the assignment: %q", snippet([]byte(p.s[p.i:])))
	}
	return out, nil
}

type jsParser struct {
	s string
	i int
}

func (p *jsParser) errorf(format string, a ...any) error {
	return fmt.Errorf("env-config.js offset %d: %s", p.i, fmt.Sprintf(format, a...))
}

func (p *jsParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// space skips whitespace and comments.
func (p *jsParser) space() {
	for p.i < len(p.s) {
		switch {
		case strings.ContainsRune(" \t\r\n", rune(p.s[p.i])):
			p.i++
		case strings.HasPrefix(p.s[p.i:], "//"):
			j := strings.IndexByte(p.s[p.i:], '\n')
			if j < 0 {
				p.i = len(p.s)
			} else {
				p.i += j + 1
			}
		case strings.HasPrefix(p.s[p.i:], "/*"):
			j := strings.Index(p.s[p.i+2:], "*/")
			if j < 0 {
				p.i = len(p.s)
			} else {
				p.i += j + 4
			}
		default:
			return
		}
	}
}

func (p *jsParser) key() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		return p.str()
	}
	j := p.i
	for j < len(p.s) && (p.s[j] == '_' || p.s[j] == '$' || p.s[j] >= 'a' && p.s[j] <= 'z' || p.s[j] >= 'A' && p.s[j] <= 'Z' || j > p.i && p.s[j] >= '0' && p.s[j] <= '9') {
		j++
	}
	if j == p.i {
		return "", p.errorf("want a key")
	}
	k := p.s[p.i:j]
	p.i = j
	return k, nil
}

// str reads a double-quoted string; JSON's escapes are a subset of JavaScript's, and the
// entrypoint only emits those.
func (p *jsParser) str() (string, error) {
	if !p.eat('"') {
		return "", p.errorf("want a double-quoted string")
	}
	start := p.i - 1
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '\\':
			p.i += 2
		case '"':
			p.i++
			var v string
			if err := json.Unmarshal([]byte(p.s[start:p.i]), &v); err != nil {
				return "", p.errorf("string %s: %v", p.s[start:p.i], err)
			}
			return v, nil
		case '\n':
			return "", p.errorf("newline inside a string")
		default:
			p.i++
		}
	}
	return "", p.errorf("unterminated string")
}
