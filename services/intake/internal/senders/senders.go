// Package senders binds each sending system to the trusts it may send for
// (issue #20, "sender binding at intake"). A sending system is known by the
// identity of its verified client certificate: an MLLP or FHIR sender's
// certificate, or the calling service's certificate on gRPC (mtls.Identity:
// the first URI SAN, a SPIFFE ID, else the first DNS SAN). A message that
// claims a trust its sender is not bound to (HL7 MSH-4, the FHIR URL's
// tenant, a gRPC request's tenant) is refused before anything is recorded
// or looked up for it.
//
// The bindings file (setting sender-bindings-file) is YAML, or JSON by the
// extension .json:
//
//	senders:
//	  - identity: spiffe://nhs.example/ns/ris/sa/north-ris
//	    trusts: [RZZ]
//	  - identity: ie.region.example.nhs.uk   # a regional integration engine
//	    trusts: [RZZ, RZY]
//
// Trusts are ODS codes; "*" binds a sender to every trust (a national
// integration engine), and must stand alone.
package senders

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// AnyTrust binds a sender to every trust.
const AnyTrust = "*"

// Binding is one sending system and the trusts it may send for.
type Binding struct {
	Identity string   `json:"identity" yaml:"identity"`
	Trusts   []string `json:"trusts" yaml:"trusts"`
}

// Bindings answers which sender may send for which trust. The zero value
// (and nil) binds nobody.
type Bindings struct {
	trusts map[string][]string
}

// New checks and indexes bindings: every binding names an identity once
// and at least one trust.
func New(bs []Binding) (*Bindings, error) {
	b := &Bindings{trusts: map[string][]string{}}
	for i, x := range bs {
		switch {
		case strings.TrimSpace(x.Identity) == "":
			return nil, fmt.Errorf("senders[%d].identity is empty", i)
		case len(x.Trusts) == 0:
			return nil, fmt.Errorf("senders[%d].trusts is empty (identity %s)", i, x.Identity)
		case slices.Contains(x.Trusts, AnyTrust) && len(x.Trusts) > 1:
			return nil, fmt.Errorf("senders[%d].trusts: %q must stand alone (identity %s)", i, AnyTrust, x.Identity)
		}
		if _, dup := b.trusts[x.Identity]; dup {
			return nil, fmt.Errorf("senders[%d].identity %s is bound twice", i, x.Identity)
		}
		var trusts []string
		for j, t := range x.Trusts {
			t = strings.ToUpper(strings.TrimSpace(t))
			if t == "" {
				return nil, fmt.Errorf("senders[%d].trusts[%d] is empty (identity %s)", i, j, x.Identity)
			}
			trusts = append(trusts, t)
		}
		b.trusts[x.Identity] = trusts
	}
	return b, nil
}

// Load reads a bindings file (YAML, or JSON by the extension .json).
// Unknown keys are errors, so a misspelt setting is not silently ignored.
func Load(path string) (*Bindings, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sender-bindings-file: %w", err)
	}
	var doc struct {
		Senders []Binding `json:"senders" yaml:"senders"`
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&doc)
	} else {
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		err = dec.Decode(&doc)
	}
	if err != nil {
		return nil, fmt.Errorf("parse sender-bindings-file %s: %w", path, err)
	}
	if len(doc.Senders) == 0 {
		return nil, fmt.Errorf("sender-bindings-file %s: no senders", path)
	}
	b, err := New(doc.Senders)
	if err != nil {
		return nil, fmt.Errorf("sender-bindings-file %s: %w", path, err)
	}
	return b, nil
}

// Allows reports whether the sender with identity may send for trust. An
// empty identity (a sender without a verified certificate) is bound to
// nothing.
func (b *Bindings) Allows(identity, trust string) bool {
	if b == nil || identity == "" {
		return false
	}
	ts := b.trusts[identity]
	return slices.Contains(ts, AnyTrust) || slices.Contains(ts, strings.ToUpper(trust))
}

// Len is the number of bound senders.
func (b *Bindings) Len() int {
	if b == nil {
		return 0
	}
	return len(b.trusts)
}
