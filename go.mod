module github.com/shmfs/shmfs

go 1.26.0

require (
	github.com/hanwen/go-fuse/v2 v2.12.1
	github.com/spf13/pflag v1.1.0
	golang.org/x/sys v0.50.0
)

require google.golang.org/protobuf v1.36.12

replace github.com/hanwen/go-fuse/v2 => ./third_party/go-fuse
