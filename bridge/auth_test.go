package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/shmfs/shmfs/bridge"
	"github.com/shmfs/shmfs/core"
)

// tlsFiles writes a CA and a server/client certificate for 127.0.0.1
// signed by it; it returns the paths of cert, key and CA.
func tlsFiles(t *testing.T) (string, string, string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shmfs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bridge"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}

// forwardOne checks that one message goes from host a to host b.
func forwardOne(t *testing.T, p *pair) {
	t.Helper()
	sub, err := p.nb.NewSubscriber("secure", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub, err := p.na.NewPublisher("secure", &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	waitLinked(t, pub)
	ctx := testCtx(t, 20*time.Second)
	if err := pub.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := receiveN(t, sub, 1, 20*time.Second)[0]; string(m.Data) != "hello" {
		t.Fatalf("got %q", m.Data)
	}
}

// Token and mutual TLS on the embedded server: a bridge with the token and
// the CA gets through, one with a wrong token does not.
func TestTokenAndTLS(t *testing.T) {
	t.Parallel()
	cert, key, ca := tlsFiles(t)
	p := newPair(t,
		bridge.Config{Token: "s3cret", TLSCert: cert, TLSKey: key, TLSCA: ca},
		bridge.Config{Token: "s3cret", TLSCert: cert, TLSKey: key, TLSCA: ca})
	if !strings.HasPrefix(p.a.URL(), "tls://") {
		t.Errorf("URL %q is not TLS", p.a.URL())
	}
	forwardOne(t, p)
	_, err := bridge.Start(bridge.Config{Core: coreConfig(t), Name: "intruder", URL: p.a.URL(), Token: "wrong", TLSCA: ca, TLSCert: cert, TLSKey: key})
	if !errors.Is(err, bridge.ErrNATS) || !strings.Contains(err.Error(), "uthorization") {
		t.Errorf("wrong token: %v", err)
	}
}

// Two embedded servers joined by a route with user and password (each
// bridge connects to its own server): messages cross the cluster.
func TestRoutesWithUserPassword(t *testing.T) {
	t.Parallel()
	p := &pair{ca: coreConfig(t), cb: coreConfig(t)}
	p.na, p.nb = openNode(t, p.ca), openNode(t, p.cb)
	p.a = startBridge(t, bridge.Config{Core: p.ca, Domain: p.ca.Domain, Name: "host-a", User: "u", Password: "p", Cluster: "127.0.0.1:0"})
	if p.a.ClusterURL() == "" {
		t.Fatal("no cluster URL")
	}
	p.b = startBridge(t, bridge.Config{Core: p.cb, Domain: p.ca.Domain, Name: "host-b", User: "u", Password: "p", Routes: []string{p.a.ClusterURL()}})
	if p.a.URL() == p.b.URL() {
		t.Fatalf("both bridges use %s", p.a.URL())
	}
	forwardOne(t, p)
}

// nkey authentication.
func TestNKey(t *testing.T) {
	t.Parallel()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	f := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(f, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	p := newPair(t, bridge.Config{NKeySeed: f}, bridge.Config{NKeySeed: f})
	forwardOne(t, p)
}

// A server reachable from other hosts needs authentication (or an
// explicit Insecure).
func TestNonLoopbackNeedsAuth(t *testing.T) {
	for _, cfg := range []bridge.Config{
		{Listen: "0.0.0.0:0"},
		{Cluster: "0.0.0.0:0", Token: "x"}, // routes need user/password
		{Listen: "10.1.2.3:4222"},
	} {
		cfg.Core = coreConfig(t)
		if _, err := bridge.Start(cfg); !errors.Is(err, bridge.ErrInvalidConfig) || !strings.Contains(err.Error(), "authentication") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
