package fs

import "strings"

// maxNameLen is NAME_MAX: longer topic names cannot be directory names.
const maxNameLen = 255

// validName reports whether topic name can be shown as a directory: not
// empty, not "." or "..", at most NAME_MAX bytes, no '/' and no NUL. Topics
// with other names exist in the domain but are not shown.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen &&
		!strings.ContainsAny(name, "/\x00")
}
