// Package mounttab reads the kernel's mount tables (/proc/mounts,
// /proc/self/mountinfo).
package mounttab

import (
	"strconv"
	"strings"
)

// Unescape decodes the octal escapes (\040 for a space, \011, \012, \134)
// that the kernel writes into mount-table fields.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
