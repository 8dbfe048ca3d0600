package inventory

import (
	"sync"

	hubv1 "github.com/sortie-dev/sortie/gen/sortie/hub/v1"
)

// objects is a map of inventories by key, with the keys whose copy in a remote store
// missed a write (dirty).
type objects struct {
	mu    sync.RWMutex // guards byKey, the maps in it, and dirty
	byKey map[Key]map[string]*hubv1.Resource
	dirty map[Key]bool
}

func newObjects() *objects {
	return &objects{byKey: map[Key]map[string]*hubv1.Resource{}, dirty: map[Key]bool{}}
}

func (o *objects) replace(k Key, objects map[string]*hubv1.Resource) {
	cp := make(map[string]*hubv1.Resource, len(objects))
	for key, r := range objects {
		cp[key] = r
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.byKey[k] = cp
}

func (o *objects) apply(k Key, upserts map[string]*hubv1.Resource, deletions map[string]*hubv1.ObjectReference) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byKey[k]
	if m == nil {
		m = map[string]*hubv1.Resource{}
		o.byKey[k] = m
	}
	for key, r := range upserts {
		m[key] = r
	}
	for key := range deletions {
		delete(m, key)
	}
}

func (o *objects) list(k Key, f Filter) []*hubv1.Resource {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var out []*hubv1.Resource
	for _, r := range o.byKey[k] {
		if f.match(r.GetRef()) {
			out = append(out, r)
		}
	}
	return out
}

func (o *objects) get(k Key, key string) *hubv1.Resource {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.byKey[k][key]
}

func (o *objects) has(k Key) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	_, ok := o.byKey[k]
	return ok
}

// copyOf returns a copy of k's map, and whether there is one.
func (o *objects) copyOf(k Key) (map[string]*hubv1.Resource, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	m, ok := o.byKey[k]
	if !ok {
		return nil, false
	}
	out := make(map[string]*hubv1.Resource, len(m))
	for key, r := range m {
		out[key] = r
	}
	return out, true
}

func (o *objects) drop(k Key) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.byKey, k)
	delete(o.dirty, k)
}

func (o *objects) markDirty(k Key) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.byKey[k]; ok {
		o.dirty[k] = true
	}
}

func (o *objects) markAllDirty() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.byKey {
		o.dirty[k] = true
	}
}

func (o *objects) dirtyKeys() []Key {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := make([]Key, 0, len(o.dirty))
	for k := range o.dirty {
		out = append(out, k)
	}
	return out
}

func (o *objects) clean(k Key) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.dirty, k)
}
