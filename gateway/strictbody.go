package gateway

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonBodyKey marks, in a Huma operation's metadata, an operation whose input has a Body
// that Huma decodes from JSON. Routes reading their raw body (the deployment starts, the
// token endpoint) parse it strictly themselves and are not marked.
const jsonBodyKey = "sortie.jsonBody"

// hasJSONBody reports whether Huma decodes a JSON body into an input of type I.
func hasJSONBody[I any]() bool {
	t := reflect.TypeFor[I]()
	if t.Kind() != reflect.Struct {
		return false
	}
	_, ok := t.FieldByName("Body")
	return ok
}

// refuseDuplicateKeys is the Huma middleware refusing, with 400, a JSON body that repeats a
// key in one object: decoders disagree on which one wins (Go's takes the last), so
// `{"roles":[...],"roles":["Organization Admin"]}` must not mean anything.
func (g *Gateway) refuseDuplicateKeys(ctx huma.Context, next func(huma.Context)) {
	r, _ := humago.Unwrap(ctx)
	if on, _ := ctx.Operation().Metadata[jsonBodyKey].(bool); !on || r == nil || r.Body == nil || r.Body == http.NoBody {
		next(ctx)
		return
	}
	timeout := g.bodyReadTimeout()
	_ = ctx.SetReadDeadline(time.Now().Add(timeout))
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		if nerr, ok := errors.AsType[net.Error](err); ok && nerr.Timeout() {
			_ = huma.WriteErr(g.api, ctx, http.StatusRequestTimeout, fmt.Sprintf("the request body did not arrive within %s", timeout))
			return
		}
		_ = huma.WriteErr(g.api, ctx, http.StatusBadRequest, "the request body could not be read")
		return
	}
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data), r.Body))
	if len(data) <= maxBodyBytes {
		if path, dup := duplicateKey(data); dup {
			_ = huma.WriteErr(g.api, ctx, http.StatusBadRequest, "duplicate key", &huma.ErrorDetail{
				Location: "body." + path,
				Message:  "this key appears more than once in its object; send each key once",
			})
			return
		}
	}
	next(ctx)
}

// jsonFrame is an object or array being walked by duplicateKey.
type jsonFrame struct {
	object bool
	seen   map[string]bool
	atKey  bool   // an object expecting a key (or its end)
	key    string // the object's current key
	index  int    // the array's current index
	path   string
}

func (f *jsonFrame) childPath() string {
	if f == nil {
		return ""
	}
	if f.object {
		if f.path == "" {
			return f.key
		}
		return f.path + "." + f.key
	}
	return fmt.Sprintf("%s[%d]", f.path, f.index)
}

// duplicateKey returns the path of the first key repeated within one object of a JSON
// document, at any depth. It walks with its own stack, so deep nesting cannot exhaust the
// goroutine's; a document that is not JSON reports nothing (the decoder refuses it next).
func duplicateKey(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []*jsonFrame
	top := func() *jsonFrame {
		if len(stack) == 0 {
			return nil
		}
		return stack[len(stack)-1]
	}
	valueDone := func() {
		if f := top(); f != nil {
			if f.object {
				f.atKey = true
			} else {
				f.index++
			}
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if f := top(); f != nil && f.object && f.atKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				valueDone()
				continue
			}
			key, _ := tok.(string)
			f.key, f.atKey = key, false
			if f.seen[key] {
				return f.childPath(), true
			}
			f.seen[key] = true
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &jsonFrame{object: true, seen: map[string]bool{}, atKey: true, path: top().childPath()})
		case json.Delim('['):
			stack = append(stack, &jsonFrame{path: top().childPath()})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
		if len(stack) == 0 && !dec.More() {
			return "", false
		}
	}
}

// strictJSONCodec is Connect's JSON codec refusing unknown fields, as the REST routes
// refuse unknown properties, instead of silently dropping them.
type strictJSONCodec struct{ name string }

func (c strictJSONCodec) Name() string { return c.name }

func (c strictJSONCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return protojson.MarshalOptions{}.Marshal(pm)
}

func (c strictJSONCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if len(data) == 0 {
		return errors.New("the request body is empty; send a JSON object")
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, pm); err != nil {
		// protojson's text starts with "proto:" and a space that is deliberately unstable.
		msg := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
		return fmt.Errorf("invalid JSON request: %s", msg)
	}
	return nil
}

// strictProtoCodec is Connect's binary codec refusing fields the schema does not declare.
type strictProtoCodec struct{}

func (strictProtoCodec) Name() string { return "proto" }

func (strictProtoCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.Marshal(pm)
}

func (strictProtoCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if err := proto.Unmarshal(data, pm); err != nil {
		return errors.New("invalid protobuf request")
	}
	if path, ok := unknownField(pm.ProtoReflect(), ""); ok {
		return fmt.Errorf("invalid protobuf request: unknown field in %s", cmp.Or(path, "the request"))
	}
	return nil
}

// unknownField reports whether m, or a message inside it, carries fields its schema does
// not declare, and the path of that message.
func unknownField(m protoreflect.Message, path string) (string, bool) {
	if len(m.GetUnknown()) > 0 {
		return path, true
	}
	var found string
	var ok bool
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := string(fd.Name())
		if path != "" {
			p = path + "." + p
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				if found, ok = unknownField(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i)); ok {
					return false
				}
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				found, ok = unknownField(mv.Message(), p+"["+k.String()+"]")
				return !ok
			})
			return !ok
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			found, ok = unknownField(v.Message(), p)
			return !ok
		}
		return true
	})
	return found, ok
}
