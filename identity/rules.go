package identity

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
)

// The rules of an environment name and of a credential name are declared once, in
// identity.proto (protovalidate, on CreateEnvironmentRequest and CreateCredentialRequest);
// this file only enforces that declaration, for REST and Connect alike, and words its
// violations as Problems naming the field.

// checkEnvironmentName adds to verr the problems of an environment name by the rules of
// CreateEnvironmentRequest.name.
func checkEnvironmentName(verr *ValidationError, name string) error {
	if !utf8Name(verr, name) {
		return nil
	}
	return checkRules(verr, &identityv1.CreateEnvironmentRequest{Name: name})
}

// checkCredentialName adds to verr the problems of a credential name by the rules of
// CreateCredentialRequest.name. Roles are checked against the catalogue by validateRoles.
func checkCredentialName(verr *ValidationError, name string) error {
	if !utf8Name(verr, name) {
		return nil
	}
	return checkRules(verr, &identityv1.CreateCredentialRequest{Name: name})
}

// utf8Name reports whether name is valid UTF-8, as every proto3 string is by the type's own
// definition (a Connect request carrying anything else never decodes); a Go caller can pass
// other bytes, which the declared patterns would read as U+FFFD and let through.
func utf8Name(verr *ValidationError, name string) bool {
	if utf8.ValidString(name) {
		return true
	}
	verr.add("name", "must be valid UTF-8")
	return false
}

// checkRules adds to verr a Problem for each rule of m's declaration that m breaks, the
// field named by its path in m ("name"). Its error is a rule that does not compile: a
// defect of identity.proto, not of the input, so a server error rather than a Problem.
func checkRules(verr *ValidationError, m proto.Message) error {
	err := protovalidate.Validate(m)
	var ve *protovalidate.ValidationError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ve):
		return fmt.Errorf("check %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	for _, v := range ve.Violations {
		verr.add(protovalidate.FieldPathString(v.Proto.GetField()), "%s", v.Proto.GetMessage())
	}
	return nil
}
