package hub

import (
	"errors"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/reflect/protoreflect"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

// The rules of a Hello, and so of an agent identifier, are declared once, in hub.proto
// (protovalidate); everything here only enforces that declaration and words its violations.

// identifierField is Hello.agent_identifier.
var identifierField = (&hubv1.Hello{}).ProtoReflect().Descriptor().Fields().ByName("agent_identifier")

// identifierOnly keeps the rules of Hello.agent_identifier alone.
var identifierOnly = protovalidate.WithFilter(protovalidate.FilterFunc(func(_ protoreflect.Message, d protoreflect.Descriptor) bool {
	fd, isField := d.(protoreflect.FieldDescriptor)
	return !isField || fd == identifierField
}))

// CheckIdentifier says what is wrong with an agent identifier, by the rules of
// Hello.agent_identifier and in the words the hub uses to refuse a Hello carrying it (the
// agent and the manifest route say the same); nil means it is valid.
func CheckIdentifier(s string) error {
	return violations(protovalidate.Validate(&hubv1.Hello{AgentIdentifier: s}, identifierOnly))
}

// ValidIdentifier reports whether s is a valid agent identifier (see CheckIdentifier).
func ValidIdentifier(s string) bool { return CheckIdentifier(s) == nil }

// checkHello returns what is wrong with a Hello, or "".
func checkHello(m *hubv1.Hello) string {
	if err := violations(protovalidate.Validate(m)); err != nil {
		return err.Error()
	}
	return ""
}

// violations words a validation error of a Hello: each violation as
// "hello.<field>: <what the rule wants>", joined by "; ".
func violations(err error) error {
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return err // a rule that does not compile: a defect of hub.proto, not of the input
	}
	parts := make([]string, 0, len(verr.Violations))
	for _, v := range verr.Violations {
		parts = append(parts, "hello."+v.String())
	}
	return errors.New(strings.Join(parts, "; "))
}
