// Command devca writes a development CA and leaf certificates into a
// folder, for the test Kafka and Redis (platform/infra/deps.sh) and for
// anyone who starts the services by hand:
//
//	go run ./platform/devca/cmd/devca -dir .deps/tls kafka redis intake rules
//
// It writes ca.crt and ca.key, and <name>.crt and <name>.key per name. It
// keeps what is there while it has at least a day left (so a running
// broker and its clients agree), issues what is missing, and starts again
// from a new CA when the CA expires within a day. Exit status 2 for bad
// usage, 1 when a file cannot be written.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/herald-health/herald/platform/devca"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr, time.Now())) }

// margin is how long a certificate must still be valid to be kept.
const margin = 24 * time.Hour

func run(args []string, stderr io.Writer, now time.Time) int {
	fs := flag.NewFlagSet("devca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "folder to write into (created if missing)")
	validity := fs.Duration("validity", devca.DefaultValidity, "validity of a new CA and its leaves")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: devca -dir DIR [-validity D] NAME...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dir == "" || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if err := ensure(*dir, now, *validity, fs.Args()); err != nil {
		fmt.Fprintf(stderr, "devca: %v\n", err)
		return 1
	}
	return 0
}

func ensure(dir string, now time.Time, validity time.Duration, names []string) error {
	caFile, keyFile := filepath.Join(dir, devca.CAFileName), filepath.Join(dir, devca.CAKeyFileName)
	ca, err := devca.Load(caFile, keyFile)
	if err != nil || ca.Certificate().NotAfter.Before(now.Add(margin)) {
		if ca, err = devca.New("Herald development CA", now, validity); err != nil {
			return err
		}
		if err := ca.WriteCA(dir); err != nil {
			return err
		}
		// A new CA invalidates every leaf of the old one.
		for _, n := range names {
			_ = os.Remove(filepath.Join(dir, n+".crt"))
		}
	}
	for _, n := range names {
		if leafValid(filepath.Join(dir, n+".crt"), ca.Certificate(), now) {
			continue
		}
		if _, err := ca.WriteLeaf(dir, devca.Leaf{Name: n}); err != nil {
			return err
		}
	}
	return nil
}

// leafValid reports whether the leaf in file was signed by ca and has at
// least margin left.
func leafValid(file string, ca *x509.Certificate, now time.Time) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return false
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return false
	}
	return leaf.CheckSignatureFrom(ca) == nil && leaf.NotAfter.After(now.Add(margin))
}
