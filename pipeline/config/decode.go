package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// maxDepth bounds how deeply a body may nest. A deploy config needs fewer than ten levels;
// the bound keeps a hostile body from costing a deep recursion.
const maxDepth = 100

// object is a decoded JSON object that remembers the order of its keys, so problems and
// warnings come out in the order the user wrote them, the same on every run.
type object struct {
	keys []string
	vals map[string]any
}

// get returns the value of key k. A JSON null counts as absent: YAML turns an empty value
// (`strategy:`) into null, and the CLI sends null for keys it has nothing for.
func (o *object) get(k string) (any, bool) {
	v, ok := o.vals[k]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// decodeBody decodes body into a tree of *object, []any, string, json.Number, bool and nil.
// It refuses what encoding/json would quietly accept: duplicate keys (the last one would win
// unseen), data after the value, and a top level that is not an object.
func decodeBody(body []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	d := &treeDecoder{dec: dec, body: body}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &SyntaxError{Message: "the body is empty: send a JSON object"}
		}
		return nil, d.syntax("", err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return nil, &SyntaxError{Message: fmt.Sprintf("the body is %s: send a JSON object", describeToken(tok))}
	}
	root, err := d.object("", 1)
	if err != nil {
		return nil, err
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		line, col := position(body, skipSpace(body, end))
		return nil, &SyntaxError{Line: line, Column: col, Message: "unexpected data after the JSON object: send exactly one object"}
	}
	return root, nil
}

type treeDecoder struct {
	dec  *json.Decoder
	body []byte
}

func (d *treeDecoder) syntax(path string, err error) *SyntaxError {
	var se *json.SyntaxError
	offset := d.dec.InputOffset()
	msg := err.Error()
	switch {
	case errors.As(err, &se):
		offset = offendingByte(d.body, se)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		offset = int64(len(d.body))
		msg = "the body ends before the JSON value is complete"
	}
	line, col := position(d.body, offset)
	return &SyntaxError{Path: path, Line: line, Column: col, Message: msg}
}

// value decodes the value that starts with tok.
func (d *treeDecoder) value(tok json.Token, path string, depth int) (any, error) {
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth > maxDepth {
		line, col := position(d.body, d.dec.InputOffset())
		return nil, &SyntaxError{Path: path, Line: line, Column: col,
			Message: fmt.Sprintf("the body nests deeper than %d levels", maxDepth)}
	}
	if delim == '{' {
		return d.object(path, depth)
	}
	list := []any{}
	for i := 0; ; i++ {
		tok, err := d.dec.Token()
		if err != nil {
			return nil, d.syntax(path, err)
		}
		if delim, ok := tok.(json.Delim); ok && delim == ']' {
			return list, nil
		}
		v, err := d.value(tok, index(path, i), depth+1)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
}

// object decodes the members of an object whose '{' was just read.
func (d *treeDecoder) object(path string, depth int) (*object, error) {
	o := &object{vals: map[string]any{}}
	for {
		before := d.dec.InputOffset()
		tok, err := d.dec.Token()
		if err != nil {
			return nil, d.syntax(path, err)
		}
		if delim, ok := tok.(json.Delim); ok && delim == '}' {
			return o, nil
		}
		k, ok := tok.(string)
		if !ok { // the decoder itself refuses non-string keys; kept for safety
			return nil, d.syntax(path, fmt.Errorf("object key is %s", describeToken(tok)))
		}
		p := key(path, k)
		if _, dup := o.vals[k]; dup {
			line, col := position(d.body, skipSpace(d.body, before))
			return nil, &SyntaxError{Path: p, Line: line, Column: col,
				Message: fmt.Sprintf("duplicate key %s: each key may appear once per object", strconv.Quote(k))}
		}
		tok, err = d.dec.Token()
		if err != nil {
			return nil, d.syntax(p, err)
		}
		v, err := d.value(tok, p, depth+1)
		if err != nil {
			return nil, err
		}
		o.keys = append(o.keys, k)
		o.vals[k] = v
	}
}

// offendingByte finds the byte a syntax error is about. encoding/json reports the offset
// after it from its scanner but before it from Decoder.Token, so look at both.
func offendingByte(body []byte, se *json.SyntaxError) int64 {
	rest, ok := strings.CutPrefix(se.Error(), "invalid character '")
	if !ok || len(rest) < 2 || rest[1] != '\'' {
		return se.Offset
	}
	for _, off := range []int64{se.Offset, se.Offset - 1} {
		if off >= 0 && off < int64(len(body)) && body[off] == rest[0] {
			return off
		}
	}
	return se.Offset
}

// skipSpace returns the offset of the first byte at or after off that is neither JSON
// whitespace nor a comma: where the next token starts.
func skipSpace(body []byte, off int64) int64 {
	for off < int64(len(body)) {
		switch body[off] {
		case ' ', '\t', '\r', '\n', ',':
			off++
		default:
			return off
		}
	}
	return off
}

// position gives the 1-based line and column of the byte at offset.
func position(body []byte, offset int64) (line, col int) {
	if offset > int64(len(body)) {
		offset = int64(len(body))
	}
	if offset < 0 {
		offset = 0
	}
	before := body[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = len(before) - bytes.LastIndexByte(before, '\n')
	return line, col
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	default:
		return describe(t)
	}
}

// describe names the JSON type of a decoded value for messages.
func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "the number " + t.String()
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case *object:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// key appends an object key to a JSON path: targets.prod, or files["k8s/web.yaml"] when the
// key holds characters that would make the path ambiguous.
func key(path, k string) string {
	if !plainKey.MatchString(k) {
		return path + "[" + strconv.Quote(k) + "]"
	}
	if path == "" {
		return k
	}
	return path + "." + k
}

// index appends an array index to a JSON path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// quote shows a user's string in a message: quoted, escaped and cut short, so a message
// stays one readable line whatever was sent.
func quote(s string) string {
	const limit = 80
	if len(s) > limit {
		cut := limit
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strconv.Quote(s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// joinQuoted lists names for a message: "a", "b".
func joinQuoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}
