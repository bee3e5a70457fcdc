package ecal

import (
	"fmt"
	"github.com/shmfs/shmfs/internal/glob"
	"strconv"
	"strings"

	"github.com/shmfs/shmfs/core/registration"
)

// checkShmName accepts the names eCAL gives its files (ecal_<hex>, with
// suffixes) and, as they arrive over UDP, refuses anything that is not a
// plain /dev/shm file name.
func checkShmName(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("%w: memory file name %q", ErrInvalidSample, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: memory file name %q", ErrInvalidSample, name)
		}
	}
	return nil
}

// Topic names. eCAL allows any string; a shmfs topic may not contain '/',
// control characters, or be "." or "..". The gateway escapes those bytes
// (and '%' itself, so that the mapping can be reversed) as %XX:
// "/camera/front" <-> "%2Fcamera%2Ffront".

// ShmfsTopic returns the shmfs topic for an eCAL topic name.
func ShmfsTopic(ecalName string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(ecalName); i++ {
		c := ecalName[i]
		if c == '%' || c == '/' || c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	t := b.String()
	switch t {
	case ".":
		t = "%2E"
	case "..":
		t = "%2E%2E"
	}
	if err := registration.CheckTopic(t); err != nil {
		return "", fmt.Errorf("eCAL topic %q has no shmfs name: %w", ecalName, err)
	}
	return t, nil
}

// ECALTopic reverses ShmfsTopic: %XX becomes the byte; a '%' not followed
// by two hex digits stays as it is.
func ECALTopic(shmfsName string) string {
	if !strings.Contains(shmfsName, "%") {
		return shmfsName
	}
	var b strings.Builder
	for i := 0; i < len(shmfsName); i++ {
		c := shmfsName[i]
		if c == '%' && i+2 < len(shmfsName) {
			if v, err := strconv.ParseUint(shmfsName[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Types. eCAL 5.13 describes a topic by tdatatype {name, encoding, desc};
// shmfs by one type string. The mapping is eCAL's own combined form
// (Util::CombinedTopicEncodingAndType), with "raw" for no type:
//
//	encoding "proto", name "pb.People.Person" <-> "proto:pb.People.Person"
//	encoding "base",  name "std::string"      <-> "base:std::string"
//	encoding "",      name "long long"        <-> "long long"
//	encoding "",      name ""                 <-> "raw"
//
// The descriptor does not travel to shmfs.

// ShmfsType returns the shmfs type string for an eCAL data type.
func ShmfsType(d DataType) string {
	switch {
	case d.Encoding == "" && d.Name == "":
		return "raw"
	case d.Encoding == "":
		return d.Name
	}
	return d.Encoding + ":" + d.Name
}

// ECALType reverses ShmfsType (split at the first ':').
func ECALType(t string) DataType {
	if t == "raw" || t == "" {
		return DataType{}
	}
	if i := strings.IndexByte(t, ':'); i >= 0 {
		return DataType{Encoding: t[:i], Name: t[i+1:]}
	}
	return DataType{Name: t}
}

// Patterns select topics: shell globs as path.Match understands them
// ('*', '?', '[...]'), except that '*' also matches '/' (eCAL topic names
// may contain it).
type Patterns = glob.Patterns
