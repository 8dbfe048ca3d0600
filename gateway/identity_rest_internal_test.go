package gateway

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
)

// TestIdentityRESTDocsMatchProtoRules holds the REST documentation of each name to the rules
// declared for it in identity.proto, and proves REST declares no rule of its own: a schema
// tag would be enforced by Huma first, with other words than Connect's.
func TestIdentityRESTDocsMatchProtoRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		input reflect.Type
		field string
		msg   proto.Message
	}{
		{reflect.TypeFor[createEnvironmentInput](), "Name", &identityv1.CreateEnvironmentRequest{}},
		{reflect.TypeFor[createCredentialInput](), "Name", &identityv1.CreateCredentialRequest{}},
	}
	for _, tt := range tests {
		desc := tt.msg.ProtoReflect().Descriptor()
		t.Run(string(desc.Name()), func(t *testing.T) {
			body, _ := tt.input.FieldByName("Body")
			f, ok := body.Type.FieldByName(tt.field)
			if !ok {
				t.Fatalf("%s has no Body.%s", tt.input, tt.field)
			}
			jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fd := desc.Fields().ByName(protoreflect.Name(jsonName))
			if fd == nil {
				t.Fatalf("%s has no field %q", desc.FullName(), jsonName)
			}
			rules, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
			sr := rules.GetString()
			if sr == nil || !sr.HasMinLen() || !sr.HasMaxLen() || !sr.HasPattern() {
				t.Fatalf("%s declares no length and pattern rules: %v", fd.FullName(), rules)
			}
			doc := f.Tag.Get("doc")
			for _, want := range []string{
				fmt.Sprintf("%d to %d ", sr.GetMinLen(), sr.GetMaxLen()),
				"(pattern " + sr.GetPattern() + ")",
			} {
				if !strings.Contains(doc, want) {
					t.Errorf("doc of %s.Body.%s = %q, want it to state %q as %s declares", tt.input.Name(), tt.field, doc, want, fd.FullName())
				}
			}
			for _, tag := range []string{"minLength", "maxLength", "pattern", "format", "enum"} {
				if v, ok := f.Tag.Lookup(tag); ok {
					t.Errorf("%s.Body.%s has %s:%q: the rule is %s's, enforced by the identity service alone", tt.input.Name(), tt.field, tag, v, fd.FullName())
				}
			}
		})
	}
}
