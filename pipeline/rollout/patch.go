package rollout

import (
	"encoding/json"
	"fmt"
)

// PromotePatch is the JSON merge patch, for the Rollout's status subresource, that approves
// a paused canary step or a blue/green promotion: it clears status.pauseConditions, as
// `kubectl argo rollouts promote` does. Sending it again is harmless while the Rollout is at
// the same pause, but a copy that arrives after the controller has moved on to a later pause
// approves that one too: when the engine cannot be sure, it sends PromotePatchAt instead.
func PromotePatch() []byte {
	return []byte(`{"status":{"pauseConditions":null}}`)
}

// PromotePatchAt is PromotePatch made conditional on the Rollout still being at
// resourceVersion (Observation.ResourceVersion): the API server answers 409 Conflict,
// changing nothing, when the Rollout has changed since it was observed. A repeat of a patch
// that went through therefore conflicts instead of approving a later pause.
func PromotePatchAt(resourceVersion string) []byte {
	rv, _ := json.Marshal(resourceVersion) // a string always encodes
	return fmt.Appendf(nil, `{"metadata":{"resourceVersion":%s},"status":{"pauseConditions":null}}`, rv)
}

// ResumePatch is the JSON merge patch, for the Rollout itself (not its status subresource),
// that undoes a manual pause (`kubectl argo rollouts pause`, Observation.SpecPaused), as
// promote does. Send it only when SpecPaused is set: writing spec.paused on a Rollout that
// lacks it changes the spec and its generation.
func ResumePatch() []byte {
	return []byte(`{"spec":{"paused":false}}`)
}

// AbortPatch is the JSON merge patch, for the Rollout's status subresource, that aborts the
// update: the controller scales the new version down and sends all traffic back to the stable
// one (`kubectl argo rollouts abort`). It is idempotent.
func AbortPatch() []byte {
	return []byte(`{"status":{"abort":true}}`)
}
