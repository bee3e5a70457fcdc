package mutex

import "unsafe"

// insideWord is the atomic counter of shared holders in a counter test map.
func insideWord(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[offInside])) }

// goWord is the start signal in a counter test map.
func goWord(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[offGo])) }
