package fs

import "github.com/shmfs/shmfs/core/registration"

// maxNameLen is NAME_MAX: longer topic names cannot be directory names.
const maxNameLen = 255

// validName reports whether topic name can be shown as a directory and be
// published: core's topic rules (registration.CheckTopic: UTF-8, no '/',
// NUL or control characters, not "." or "..") and at most NAME_MAX bytes.
// Topics with other names exist in the domain but are not shown.
func validName(name string) bool {
	return len(name) <= maxNameLen && registration.CheckTopic(name) == nil
}
