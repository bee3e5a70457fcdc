// Package bridge carries shmfs topics between hosts over NATS (`shmfs
// bridge`). A bridge subscribes to the local topics other hosts want and
// publishes their messages to NATS; it subscribes to NATS and publishes
// what other hosts' bridges send into the local domain, through one local
// publisher per remote publisher (Origin "nats:<host>"), so remote topics
// appear in 'shmfs ls', the mount and the Go API like local ones.
//
// By default a bridge runs an embedded nats-server (loopback only);
// Config.Listen, Config.Cluster and Config.Routes serve other hosts and
// join bridges into a NATS cluster, Config.URL uses an existing NATS
// deployment instead.
//
// The subject mapping, the message headers, the bridges' announcements,
// deduplication, gap counting and the splitting of large messages are
// specified in docs/bridge.md; what a user sees is there too.
package bridge
