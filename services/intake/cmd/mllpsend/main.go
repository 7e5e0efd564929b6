// Command mllpsend replays HL7 v2 files over MLLP and prints each ACK: for
// operators testing an interface, and for tests. Every *.hl7 file of the
// given folders (or the given files) is sent in name order on one
// connection; LF or CRLF line ends are turned into CR segment separators.
//
//	mllpsend -addr 127.0.0.1:2575 ./testdata
//
// The exit status is 0 if every message got AA, 1 if any got AE/AR or
// failed, 2 for bad usage.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/herald-health/herald/services/intake/internal/hl7"
	"github.com/herald-health/herald/services/intake/internal/mllp"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mllpsend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:2575", "MLLP server address")
	useTLS := fs.Bool("tls", false, "connect with TLS")
	insecure := fs.Bool("tls-insecure", false, "do not verify the server certificate (test servers only)")
	timeout := fs.Duration("timeout", 30*time.Second, "time allowed for each message and its ACK")
	raw := fs.Bool("raw", false, "print each ACK whole (segments on lines) instead of a summary")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: mllpsend [-addr host:port] [-tls] folder-or-file.hl7 ...")
		return 2
	}
	files, err := collect(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var tlsCfg *tls.Config
	if *useTLS {
		tlsCfg = &tls.Config{InsecureSkipVerify: *insecure, MinVersion: tls.VersionTLS12} //nolint:gosec // operator's explicit choice for test servers
	}
	c, err := mllp.Dial(context.Background(), *addr, tlsCfg, *timeout)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer func() { _ = c.Close() }()
	status := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stdout, "%s\tERROR\t%v\n", f, err)
			status = 1
			continue
		}
		ack, err := c.Send(normalise(b))
		if err != nil {
			fmt.Fprintf(stdout, "%s\tERROR\t%v\n", f, err)
			return 1
		}
		code, text := summary(ack)
		if *raw {
			fmt.Fprintf(stdout, "%s\n%s\n", f, strings.ReplaceAll(strings.TrimRight(string(ack), "\r"), "\r", "\n"))
		} else {
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", f, code, text)
		}
		if code != string(hl7.AckAccept) {
			status = 1
		}
	}
	return status
}

func collect(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		m, err := filepath.Glob(filepath.Join(a, "*.hl7"))
		if err != nil {
			return nil, err
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	return files, nil
}

// normalise turns CRLF and LF line ends into CR and drops trailing blank
// lines, so files edited on any system send as HL7.
func normalise(b []byte) []byte {
	s := strings.ReplaceAll(string(b), "\r\n", "\r")
	s = strings.ReplaceAll(s, "\n", "\r")
	return []byte(strings.TrimRight(s, "\r") + "\r")
}

// summary returns MSA-1 and MSA-3 (with any ERR-8 texts) of an ACK.
func summary(ack []byte) (code, text string) {
	m, err := hl7.Parse(ack)
	if err != nil {
		return "UNPARSEABLE", err.Error()
	}
	msa, ok := m.Segment("MSA")
	if !ok {
		return "NOMSA", ""
	}
	parts := []string{msa.Field(3)}
	for _, e := range m.All("ERR") {
		if p := e.Field(8); p != "" {
			loc := e.Get(2, 1, 1, 1) + "-" + e.Get(2, 1, 3, 1) + ": " + p
			if !strings.Contains(parts[0], p) {
				parts = append(parts, loc)
			}
		}
	}
	return msa.Field(1), strings.Join(parts, " | ")
}
