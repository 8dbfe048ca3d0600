package hub

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
	"github.com/sortie-dev/sortie/hub/internal/inventory"
	"github.com/sortie-dev/sortie/store"
)

// snapshotLimit is how many bytes of chunks one inventory snapshot may take, as a multiple
// of MaxMessageBytes.
const snapshotLimit = 16

// snapshotBuilder collects the chunks of one snapshot.
type snapshotBuilder struct {
	id      string
	objects map[string]*hubv1.Resource
	bytes   int
}

// objectKey names an object within an agent's inventory.
func objectKey(ref *hubv1.ObjectReference) string {
	return ref.GetApiVersion() + "|" + ref.GetKind() + "|" + ref.GetNamespace() + "|" + ref.GetName()
}

// validRef reports whether ref names an object well enough to be cached.
func validRef(ref *hubv1.ObjectReference) bool {
	return ref.GetKind() != "" && ref.GetName() != "" && ref.GetApiVersion() != "" &&
		!strings.Contains(objectKey(ref), "\x00")
}

// isSecret reports whether r is a Secret, by its reference or by the object itself. Secrets
// are never cached, whatever the agent sends.
func isSecret(r *hubv1.Resource) bool {
	if strings.EqualFold(r.GetRef().GetKind(), "Secret") {
		return true
	}
	obj := r.GetObject()
	if !bytes.Contains(obj, []byte("Secret")) {
		return false
	}
	var head struct {
		Kind string `json:"kind"`
	}
	// An object that does not parse cannot be shown as a Secret either; drop it to be safe.
	if err := json.Unmarshal(obj, &head); err != nil {
		return true
	}
	return strings.EqualFold(head.Kind, "Secret")
}

// accept filters what an agent reports: it returns the objects worth caching, by key, and
// how many it dropped.
func accept(resources []*hubv1.Resource) (map[string]*hubv1.Resource, int, int) {
	out := make(map[string]*hubv1.Resource, len(resources))
	var secrets, invalid int
	for _, r := range resources {
		switch {
		case !validRef(r.GetRef()):
			invalid++
		case isSecret(r):
			secrets++
		default:
			out[objectKey(r.Ref)] = r
		}
	}
	return out, secrets, invalid
}

func (h *Hub) logDropped(s *stream, secrets, invalid int) {
	if secrets > 0 {
		s.log.Warn("dropped Secret objects from the agent's inventory; Secrets are never cached", "count", secrets)
	}
	if invalid > 0 {
		s.log.Warn("dropped inventory objects without api_version, kind and name", "count", invalid)
	}
}

// snapshotChunk adds one chunk to the stream's snapshot and replaces the inventory on the
// last one. It returns a protocol violation, or "".
func (h *Hub) snapshotChunk(s *stream, m *hubv1.InventorySnapshot) string {
	if s.snap == nil || s.snap.id != m.SnapshotId {
		if s.snap != nil {
			s.log.Info("inventory snapshot abandoned for a newer one", "snapshot", quote(s.snap.id))
		}
		s.snap = &snapshotBuilder{id: m.SnapshotId, objects: map[string]*hubv1.Resource{}}
	}
	s.snap.bytes += proto.Size(m)
	if limit := snapshotLimit * h.cfg.MaxMessageBytes; s.snap.bytes > limit {
		return fmt.Sprintf("inventory snapshot %s exceeds %d bytes", quote(m.SnapshotId), limit)
	}
	objects, secrets, invalid := accept(m.Resources)
	h.logDropped(s, secrets, invalid)
	for key, r := range objects {
		s.snap.objects[key] = r
	}
	if !m.Last {
		return ""
	}
	objects = s.snap.objects
	s.snap = nil
	s.log.Debug("inventory snapshot received", "objects", len(objects))
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := h.shared.Replace(ctx, s.key.inventoryKey(), objects); err != nil {
		s.log.Warn("storing the inventory failed; retrying later", "err", err)
	}
	h.changed(s.key, true, nil, nil)
	return ""
}

// applyDelta applies an inventory change.
func (h *Hub) applyDelta(s *stream, m *hubv1.InventoryDelta) {
	upserts, secrets, invalid := accept(m.Upserts)
	h.logDropped(s, secrets, invalid)
	var deletions []*hubv1.ObjectReference
	for _, ref := range m.Deletions {
		if validRef(ref) {
			deletions = append(deletions, ref)
		}
	}
	h.applyChange(s, upserts, deletions)
}

// applyEvent applies what a Watch command reports to the inventory, as a delta would: the
// watched objects are those the engine waits on, so reading them must not wait for the
// agent's next inventory delta.
func (h *Hub) applyEvent(s *stream, m *hubv1.ResourceEvent) {
	r := m.GetResource()
	switch m.GetType() {
	case hubv1.ResourceEvent_TYPE_ADDED, hubv1.ResourceEvent_TYPE_MODIFIED:
		upserts, secrets, invalid := accept([]*hubv1.Resource{r})
		h.logDropped(s, secrets, invalid)
		h.applyChange(s, upserts, nil)
	case hubv1.ResourceEvent_TYPE_DELETED:
		if validRef(r.GetRef()) {
			h.applyChange(s, nil, []*hubv1.ObjectReference{r.GetRef()})
		}
	default:
		s.log.Debug("ignoring a resource event of unknown type", "watch", quote(m.GetWatchId()), "type", m.GetType().String())
	}
}

// applyChange caches upserts and removes deletions, then tells the subscribers.
func (h *Hub) applyChange(s *stream, upserts map[string]*hubv1.Resource, deletions []*hubv1.ObjectReference) {
	if len(upserts) == 0 && len(deletions) == 0 {
		return
	}
	keys := make(map[string]*hubv1.ObjectReference, len(deletions))
	for _, ref := range deletions {
		keys[objectKey(ref)] = ref
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := h.shared.Apply(ctx, s.key.inventoryKey(), upserts, keys); err != nil {
		s.log.Warn("storing an inventory change failed; retrying later", "err", err)
	}
	upserted := make([]*hubv1.ObjectReference, 0, len(upserts))
	for _, r := range upserts {
		upserted = append(upserted, proto.CloneOf(r.Ref))
	}
	deleted := make([]*hubv1.ObjectReference, len(deletions))
	for i, ref := range deletions {
		deleted[i] = proto.CloneOf(ref)
	}
	h.changed(s.key, false, upserted, deleted)
}

// inventory returns the cached objects of an account f selects: with Redis, only those are
// read.
func (h *Hub) inventory(ctx context.Context, k agentKey, f inventory.Filter) ([]*hubv1.Resource, error) {
	if err := h.checkAccount(ctx, k); err != nil {
		return nil, err
	}
	objects, err := h.shared.List(ctx, k.inventoryKey(), f)
	if err != nil {
		return nil, sharedError(ctx, "read inventory", err)
	}
	return objects, nil
}

// Namespaces lists the namespaces of an account from the inventory cache: the Namespace
// objects and the namespaces of namespaced objects, sorted. It reads the Namespace objects
// and the inventory's index of namespaces, not every object.
func (h *Hub) Namespaces(ctx context.Context, t store.Tenant, account string) ([]string, error) {
	k := agentKey{tenant: t, agent: account}
	objects, err := h.inventory(ctx, k, inventory.Filter{Kind: "Namespace"})
	if err != nil {
		return nil, err
	}
	names, err := h.shared.Namespaces(ctx, k.inventoryKey())
	if err != nil {
		return nil, sharedError(ctx, "read inventory", err)
	}
	for _, r := range objects {
		if r.Ref.Kind == "Namespace" && r.Ref.ApiVersion == "v1" && !slices.Contains(names, r.Ref.Name) {
			names = append(names, r.Ref.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Resources lists an account's cached objects of one kind ("" = any) in one namespace ("" =
// any), sorted by kind, namespace and name: with Redis, only the objects of that kind or
// namespace are read. The results are copies.
func (h *Hub) Resources(ctx context.Context, t store.Tenant, account, kind, namespace string) ([]*hubv1.Resource, error) {
	objects, err := h.inventory(ctx, agentKey{tenant: t, agent: account}, inventory.Filter{Kind: kind, Namespace: namespace})
	if err != nil {
		return nil, err
	}
	out := make([]*hubv1.Resource, 0, len(objects))
	for _, r := range objects {
		out = append(out, proto.CloneOf(r))
	}
	slices.SortFunc(out, func(a, b *hubv1.Resource) int {
		return cmp.Or(cmp.Compare(a.Ref.Kind, b.Ref.Kind), cmp.Compare(a.Ref.Namespace, b.Ref.Namespace),
			cmp.Compare(a.Ref.Name, b.Ref.Name), cmp.Compare(a.Ref.ApiVersion, b.Ref.ApiVersion))
	})
	return out, nil
}

// CachedObject returns the cached object ref names in an account's inventory: one map
// lookup in memory or, with Redis, one HGET of that object, never a scan of the inventory.
// The result is a copy the caller owns and may keep or modify. It returns
// ErrObjectNotCached when the agent has not reported the object (Secrets never are),
// ErrUnknownAccount when the account is neither connected nor within its grace period, and
// store.ErrUnavailable when Redis is unreachable.
func (h *Hub) CachedObject(ctx context.Context, t store.Tenant, account string, ref *hubv1.ObjectReference) (*hubv1.Resource, error) {
	k := agentKey{tenant: t, agent: account}
	if !ValidIdentifier(account) {
		return nil, &unknownAccountError{account: account}
	}
	if !validRef(ref) {
		return nil, fmt.Errorf("object reference needs api_version, kind and name: %w", ErrInvalidReference)
	}
	shared, err := h.shared.Get(ctx, k.inventoryKey(), objectKey(ref))
	if err != nil {
		return nil, sharedError(ctx, "read inventory object", err)
	}
	if shared != nil {
		return proto.CloneOf(shared), nil
	}
	// Only a miss pays for telling an unknown account from a missing object.
	if err := h.checkAccount(ctx, k); err != nil {
		return nil, err
	}
	return nil, &notCachedError{account: account, ref: ref}
}

// notCachedError is ErrObjectNotCached naming the object.
type notCachedError struct {
	account string
	ref     *hubv1.ObjectReference
}

func (e *notCachedError) Error() string {
	name := e.ref.GetName()
	if ns := e.ref.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s %s (%s) is not in the inventory of account '%s'", e.ref.GetKind(), quote(name), e.ref.GetApiVersion(), e.account)
}
func (e *notCachedError) Is(target error) bool { return target == ErrObjectNotCached }
