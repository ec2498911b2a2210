package fedmsgconf

import "reflect"

// maxValues bounds how many values (dicts, lists and scalars, counted as a
// tree) one file's config and the merged config may hold. Fedora's largest
// configs hold a few thousand; the bound keeps a config that shares
// sub-dicts between many keys from making the merge, a JSON copy or any
// later walk exponential.
const maxValues = 1 << 18

// mergeInto is fedmsg's _recursive_update: dicts are merged key by key,
// anything else is replaced, and values are shared, not copied, as in
// Python (a dict shared by two keys of one file receives a later file's
// keys under both).
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		sub, srcIsDict := v.(map[string]any)
		if cur, ok := dst[k].(map[string]any); ok && srcIsDict {
			mergeInto(cur, sub)
			continue
		}
		dst[k] = v
	}
}

// tooLarge reports whether v, counted as a tree, holds more than maxValues
// values. Each shared dict or list is counted once and remembered, so the
// count is linear in the parsed source even when expanding it is not.
func tooLarge(v any) bool {
	return treeSize(v, map[sharedKey]int{}) > maxValues
}

// sharedKey identifies a dict or list by its storage.
type sharedKey struct {
	ptr uintptr
	len int
}

// treeSize stops counting once past maxValues.
func treeSize(v any, seen map[sharedKey]int) int {
	var items []any
	switch c := v.(type) {
	case map[string]any:
		for _, e := range c {
			items = append(items, e)
		}
	case []any:
		items = c
	default:
		return 1
	}
	key := sharedKey{reflect.ValueOf(v).Pointer(), len(items)}
	if n, ok := seen[key]; ok {
		return n
	}
	n := 1
	for _, e := range items {
		if n += treeSize(e, seen); n > maxValues {
			break
		}
	}
	seen[key] = n
	return n
}
