package ecal

import (
	"fmt"
	"sort"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Cmd is eCAL.pb.eCmdType: what a registration sample announces.
type Cmd int32

// The command types of eCAL 5.x registration samples.
const (
	CmdNone        Cmd = 0
	CmdSetSample   Cmd = 1
	CmdRegPub      Cmd = 2
	CmdRegSub      Cmd = 3
	CmdRegProcess  Cmd = 4
	CmdRegService  Cmd = 5
	CmdRegClient   Cmd = 6
	CmdUnregPub    Cmd = 12
	CmdUnregSub    Cmd = 13
	CmdUnregProc   Cmd = 14
	CmdUnregServ   Cmd = 15
	CmdUnregClient Cmd = 16
)

// Transport layers (eCAL.pb.eTLayerType).
const (
	LayerUDPMC  = 1
	LayerSHM    = 4
	LayerTCP    = 5
	LayerInproc = 42
)

// Sample is the part of eCAL.pb.Sample (eCAL 5.x, ecal.proto) that
// registration uses. Field numbers are in the codec below; everything else
// in a received sample is skipped.
type Sample struct {
	Cmd      Cmd
	HostName string // host.hname (field 2.1)
	Process  *Process
	Topic    *Topic
}

// Process is eCAL.pb.Process (field 3 of Sample).
type Process struct {
	HostName       string // 2
	HostGroup      string // 18
	PID            int32  // 3
	Name           string // 4: executable path
	Unit           string // 5
	Param          string // 6
	Memory         int64  // 7
	Severity       int32  // 12.1
	StateInfo      string // 12.2
	InitState      int32  // 15
	InitInfo       string // 16
	RuntimeVersion string // 17
}

// Topic is eCAL.pb.Topic (field 5 of Sample).
type Topic struct {
	RClock      int32  // 1
	HostID      int32  // 26
	HostName    string // 2
	HostGroup   string // 28
	PID         int32  // 3
	ProcessName string // 4
	Unit        string // 5
	ID          string // 6: topic id, unique per entity of a process
	Name        string // 7
	Direction   string // 8
	TType       string // 9: "encoding:name" (deprecated, still sent by 5.13)
	TDesc       []byte // 10 (deprecated)
	DataType    DataType
	Reliable    bool    // 11.1 (QOS reliability)
	HistDepth   int32   // 11.3
	Layers      []Layer // 12
	Size        int32   // 13
	ConnLocal   int32   // 16
	ConnExt     int32   // 17
	Drops       int32   // 18
	DataID      int64   // 19
	DataClock   int64   // 20
	DataFreq    int32   // 21: mHz
	Attr        map[string]string
	hasDataType bool
}

// DataType is eCAL.pb.DataTypeInformation (field 30 of Topic).
type DataType struct {
	Name     string // 1
	Encoding string // 2
	Desc     []byte // 3
}

// Layer is eCAL.pb.TLayer. For the shared-memory layer MemFiles carries
// par_layer.layer_par_shm.memory_file_list; ParShm is the deprecated single
// name (eCAL <= 5.9), still filled by 5.13 when there is one file.
type Layer struct {
	Type      int32    // 1
	Version   int32    // 2
	Confirmed bool     // 3
	ParShm    string   // 4
	MemFiles  []string // 5.2.1
	HasPar    bool     // field 5 present (eCAL 5.13 always sends it)
	TCPPort   int32    // 5.4.1
}

// Limits on decoded samples: a hostile datagram may claim anything.
const (
	maxString   = 4096
	maxDesc     = 8 << 20
	maxLayers   = 16
	maxMemFiles = 64
	maxAttr     = 256
	maxDepth    = 8
)

// errSample wraps every decoding failure.
func errSample(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSample}, a...)...)
}

// DecodeSample parses a serialized eCAL.pb.Sample.
func DecodeSample(b []byte) (*Sample, error) {
	s := &Sample{}
	err := fields(b, 0, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			s.Cmd = Cmd(int32(x))
		case num == 2 && typ == protowire.BytesType:
			return fields(v, 1, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num == 1 && typ == protowire.BytesType {
					return str(&s.HostName, v, "host.hname")
				}
				return nil
			})
		case num == 3 && typ == protowire.BytesType:
			if s.Process == nil {
				s.Process = &Process{}
			}
			return s.Process.decode(v)
		case num == 5 && typ == protowire.BytesType:
			if s.Topic == nil {
				s.Topic = &Topic{}
			}
			return s.Topic.decode(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (p *Process) decode(b []byte) error {
	return fields(b, 1, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if typ == protowire.VarintType {
			switch num {
			case 3:
				p.PID = int32(x)
			case 7:
				p.Memory = int64(x)
			case 15:
				p.InitState = int32(x)
			}
			return nil
		}
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 2:
			return str(&p.HostName, v, "process.hname")
		case 18:
			return str(&p.HostGroup, v, "process.hgname")
		case 4:
			return str(&p.Name, v, "process.pname")
		case 5:
			return str(&p.Unit, v, "process.uname")
		case 6:
			return str(&p.Param, v, "process.pparam")
		case 12:
			return fields(v, 2, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case num == 1 && typ == protowire.VarintType:
					p.Severity = int32(x)
				case num == 2 && typ == protowire.BytesType:
					return str(&p.StateInfo, v, "process.state.info")
				}
				return nil
			})
		case 16:
			return str(&p.InitInfo, v, "process.component_init_info")
		case 17:
			return str(&p.RuntimeVersion, v, "process.ecal_runtime_version")
		}
		return nil
	})
}

func (t *Topic) decode(b []byte) error {
	return fields(b, 1, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if typ == protowire.VarintType {
			switch num {
			case 1:
				t.RClock = int32(x)
			case 26:
				t.HostID = int32(x)
			case 3:
				t.PID = int32(x)
			case 13:
				t.Size = int32(x)
			case 16:
				t.ConnLocal = int32(x)
			case 17:
				t.ConnExt = int32(x)
			case 18:
				t.Drops = int32(x)
			case 19:
				t.DataID = int64(x)
			case 20:
				t.DataClock = int64(x)
			case 21:
				t.DataFreq = int32(x)
			}
			return nil
		}
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 2:
			return str(&t.HostName, v, "topic.hname")
		case 28:
			return str(&t.HostGroup, v, "topic.hgname")
		case 4:
			return str(&t.ProcessName, v, "topic.pname")
		case 5:
			return str(&t.Unit, v, "topic.uname")
		case 6:
			return str(&t.ID, v, "topic.tid")
		case 7:
			return str(&t.Name, v, "topic.tname")
		case 8:
			return str(&t.Direction, v, "topic.direction")
		case 9:
			return str(&t.TType, v, "topic.ttype")
		case 10:
			if len(v) > maxDesc {
				return errSample("topic.tdesc of %d bytes", len(v))
			}
			t.TDesc = append([]byte(nil), v...)
		case 30:
			t.hasDataType = true
			return t.DataType.decode(v)
		case 11:
			return fields(v, 2, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
				if typ == protowire.VarintType {
					switch num {
					case 1:
						t.Reliable = x == 1
					case 3:
						t.HistDepth = int32(x)
					}
				}
				return nil
			})
		case 12:
			if len(t.Layers) >= maxLayers {
				return errSample("more than %d transport layers", maxLayers)
			}
			var l Layer
			if err := l.decode(v); err != nil {
				return err
			}
			t.Layers = append(t.Layers, l)
		case 27:
			if len(t.Attr) >= maxAttr {
				return errSample("more than %d topic attributes", maxAttr)
			}
			var k, val string
			if err := fields(v, 2, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					return str(&k, v, "topic.attr key")
				case num == 2 && typ == protowire.BytesType:
					return str(&val, v, "topic.attr value")
				}
				return nil
			}); err != nil {
				return err
			}
			if t.Attr == nil {
				t.Attr = map[string]string{}
			}
			t.Attr[k] = val
		}
		return nil
	})
}

func (d *DataType) decode(b []byte) error {
	return fields(b, 2, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			return str(&d.Name, v, "tdatatype.name")
		case 2:
			return str(&d.Encoding, v, "tdatatype.encoding")
		case 3:
			if len(v) > maxDesc {
				return errSample("tdatatype.desc of %d bytes", len(v))
			}
			d.Desc = append([]byte(nil), v...)
		}
		return nil
	})
}

func (l *Layer) decode(b []byte) error {
	return fields(b, 2, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			l.Type = int32(x)
		case num == 2 && typ == protowire.VarintType:
			l.Version = int32(x)
		case num == 3 && typ == protowire.VarintType:
			l.Confirmed = x != 0
		case num == 4 && typ == protowire.BytesType:
			return str(&l.ParShm, v, "tlayer.par_shm")
		case num == 5 && typ == protowire.BytesType:
			l.HasPar = true
			// ConnnectionPar: 2 = LayerParShm {1 = repeated memory_file_list}, 4 = LayerParTcp {1 = port}
			return fields(v, 3, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if typ != protowire.BytesType {
					return nil
				}
				switch num {
				case 2:
					return fields(v, 4, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
						if num != 1 || typ != protowire.BytesType {
							return nil
						}
						if len(l.MemFiles) >= maxMemFiles {
							return errSample("more than %d memory files", maxMemFiles)
						}
						var s string
						if err := str(&s, v, "memory_file_list"); err != nil {
							return err
						}
						l.MemFiles = append(l.MemFiles, s)
						return nil
					})
				case 4:
					return fields(v, 4, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
						if num == 1 && typ == protowire.VarintType {
							l.TCPPort = int32(x)
						}
						return nil
					})
				}
				return nil
			})
		}
		return nil
	})
}

// str stores a string field after checking its size and that it is UTF-8
// (eCAL fills these from std::string; anything else is not a name we use).
func str(dst *string, v []byte, what string) error {
	if len(v) > maxString {
		return errSample("%s of %d bytes (limit %d)", what, len(v), maxString)
	}
	if !utf8.Valid(v) {
		return errSample("%s is not UTF-8", what)
	}
	*dst = string(v)
	return nil
}

// fields walks the fields of one protobuf message. For varint fields x is
// the value; for length-delimited fields v is the payload. Fixed-size and
// group fields are skipped; malformed input is an error.
func fields(b []byte, depth int, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	if depth > maxDepth {
		return errSample("nesting deeper than %d", maxDepth)
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errSample("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errSample("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.VarintType && typ != protowire.BytesType {
			continue
		}
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// Encode serializes s as eCAL 5.13 does (the fields it fills, in field
// order; zero values omitted as proto3 does).
func (s *Sample) Encode(dst []byte) []byte {
	dst = appendVarint(dst, 1, uint64(s.Cmd))
	if s.HostName != "" {
		dst = appendMsg(dst, 2, func(b []byte) []byte { return appendString(b, 1, s.HostName) })
	}
	if s.Process != nil {
		dst = appendMsg(dst, 3, s.Process.encode)
	}
	if s.Topic != nil {
		dst = appendMsg(dst, 5, s.Topic.encode)
	}
	return dst
}

func (p *Process) encode(b []byte) []byte {
	b = appendString(b, 2, p.HostName)
	b = appendVarint(b, 3, uint64(int64(p.PID)))
	b = appendString(b, 4, p.Name)
	b = appendString(b, 5, p.Unit)
	b = appendString(b, 6, p.Param)
	b = appendVarint(b, 7, uint64(p.Memory))
	if p.Severity != 0 || p.StateInfo != "" {
		b = appendMsg(b, 12, func(b []byte) []byte {
			b = appendVarint(b, 1, uint64(int64(p.Severity)))
			return appendString(b, 2, p.StateInfo)
		})
	}
	b = appendVarint(b, 15, uint64(int64(p.InitState)))
	b = appendString(b, 16, p.InitInfo)
	b = appendString(b, 17, p.RuntimeVersion)
	return appendString(b, 18, p.HostGroup)
}

func (t *Topic) encode(b []byte) []byte {
	b = appendVarint(b, 1, uint64(int64(t.RClock)))
	b = appendString(b, 2, t.HostName)
	b = appendVarint(b, 3, uint64(int64(t.PID)))
	b = appendString(b, 4, t.ProcessName)
	b = appendString(b, 5, t.Unit)
	b = appendString(b, 6, t.ID)
	b = appendString(b, 7, t.Name)
	b = appendString(b, 8, t.Direction)
	b = appendString(b, 9, t.TType)
	b = appendBytes(b, 10, t.TDesc)
	if t.Reliable || t.HistDepth != 0 {
		b = appendMsg(b, 11, func(b []byte) []byte {
			if t.Reliable {
				b = appendVarint(b, 1, 1)
			}
			return appendVarint(b, 3, uint64(int64(t.HistDepth)))
		})
	}
	for i := range t.Layers {
		b = appendMsg(b, 12, t.Layers[i].encode)
	}
	b = appendVarint(b, 13, uint64(int64(t.Size)))
	b = appendVarint(b, 16, uint64(int64(t.ConnLocal)))
	b = appendVarint(b, 17, uint64(int64(t.ConnExt)))
	b = appendVarint(b, 18, uint64(int64(t.Drops)))
	b = appendVarint(b, 19, uint64(t.DataID))
	b = appendVarint(b, 20, uint64(t.DataClock))
	b = appendVarint(b, 21, uint64(int64(t.DataFreq)))
	b = appendVarint(b, 26, uint64(int64(t.HostID)))
	keys := make([]string, 0, len(t.Attr))
	for k := range t.Attr {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b = appendMsg(b, 27, func(b []byte) []byte {
			b = appendString(b, 1, k)
			return appendString(b, 2, t.Attr[k])
		})
	}
	b = appendString(b, 28, t.HostGroup)
	if t.hasDataType || t.DataType.Name != "" || t.DataType.Encoding != "" || len(t.DataType.Desc) > 0 {
		b = appendMsg(b, 30, func(b []byte) []byte {
			b = appendString(b, 1, t.DataType.Name)
			b = appendString(b, 2, t.DataType.Encoding)
			return appendBytes(b, 3, t.DataType.Desc)
		})
	}
	return b
}

func (l *Layer) encode(b []byte) []byte {
	b = appendVarint(b, 1, uint64(int64(l.Type)))
	b = appendVarint(b, 2, uint64(int64(l.Version)))
	if l.Confirmed {
		b = appendVarint(b, 3, 1)
	}
	b = appendString(b, 4, l.ParShm)
	if l.HasPar || len(l.MemFiles) > 0 || l.TCPPort != 0 {
		b = appendMsg(b, 5, func(b []byte) []byte {
			if len(l.MemFiles) > 0 {
				b = appendMsg(b, 2, func(b []byte) []byte {
					for _, f := range l.MemFiles {
						b = protowire.AppendTag(b, 1, protowire.BytesType)
						b = protowire.AppendString(b, f)
					}
					return b
				})
			}
			if l.TCPPort != 0 {
				b = appendMsg(b, 4, func(b []byte) []byte { return appendVarint(b, 1, uint64(int64(l.TCPPort))) })
			}
			return b
		})
	}
	return b
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendMsg appends an embedded message written by fn (always, even empty:
// presence matters for sub-messages).
func appendMsg(b []byte, num protowire.Number, fn func([]byte) []byte) []byte {
	body := fn(nil)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, body)
}

// SHMFiles returns the memory files of the shared-memory layer: the list, or
// the deprecated single name when there is no list.
func (t *Topic) SHMFiles() []string {
	for _, l := range t.Layers {
		if l.Type != LayerSHM {
			continue
		}
		if len(l.MemFiles) > 0 {
			return l.MemFiles
		}
		if l.ParShm != "" {
			return []string{l.ParShm}
		}
	}
	return nil
}

// Type returns the topic's data type, filled from the deprecated ttype
// ("encoding:name") when tdatatype is absent, as eCAL 5.13 itself does.
func (t *Topic) Type() DataType {
	if t.hasDataType {
		return t.DataType
	}
	d := DataType{Desc: t.TDesc}
	if i := indexByte(t.TType, ':'); i >= 0 {
		d.Encoding, d.Name = t.TType[:i], t.TType[i+1:]
	} else {
		d.Name = t.TType
	}
	return d
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
