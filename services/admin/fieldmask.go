package admin

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// applyMask copies into dst the fields of src named by paths (proto field
// names, dotted for nested messages, as in google.protobuf.FieldMask). A
// field absent from src is cleared in dst. Paths in identity (the fields
// that name the resource and its etag: a REST PATCH body carries them, so
// the gateway puts them in the mask) are skipped. Every other path must be
// one of mutable or lie below one; anything else is INVALID_ARGUMENT, so
// that output-only fields such as create_time cannot be written.
func applyMask(dst, src proto.Message, paths, mutable, identity []string) error {
	for _, path := range paths {
		if slices.Contains(identity, path) {
			continue
		}
		if !slices.ContainsFunc(mutable, func(m string) bool { return path == m || strings.HasPrefix(path, m+".") }) {
			return invalid(fmt.Sprintf("update_mask: %q cannot be updated (mutable: %s)", path, strings.Join(mutable, ", ")))
		}
		d, s := dst.ProtoReflect(), src.ProtoReflect()
		names := strings.Split(path, ".")
		for i, name := range names {
			fd := d.Descriptor().Fields().ByName(protoreflect.Name(name))
			if fd == nil {
				return invalid(fmt.Sprintf("update_mask: no field %q", path))
			}
			if i == len(names)-1 {
				if s.Has(fd) {
					d.Set(fd, s.Get(fd))
				} else {
					d.Clear(fd)
				}
				break
			}
			if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
				return invalid(fmt.Sprintf("update_mask: %q: %s is not a message", path, name))
			}
			d = d.Mutable(fd).Message()
			// An unset message reads as an empty one: the leaf is then
			// cleared.
			s = s.Get(fd).Message()
		}
	}
	return nil
}
