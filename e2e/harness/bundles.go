package harness

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/eventlog"
	"github.com/herald-health/herald/platform/eventsign"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
)

// BundleHash is the content hash rules gives a bundle: SHA-256 over its
// files sorted by name, each as the big-endian 64-bit length and bytes of
// its name, then of its content (services/rules/internal/domain/bundle.Hash;
// the harness runs the binaries and so repeats the documented format).
func BundleHash(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(files[name])))
		h.Write(n[:])
		h.Write(files[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Seed people of the production-profile harness: one proposes the seed
// bundles, another approves them.
var (
	SeedProposer = &eventsv1.PolicyPerson{Issuer: "https://e2e-idp.test", Subject: "e2e-policy-admin", PersonId: "e2e-policy-admin", Role: "policy-admin"}
	SeedApprover = &eventsv1.PolicyPerson{Issuer: "https://e2e-idp.test", Subject: "e2e-safety-lead", PersonId: "e2e-safety-lead", Role: "safety-lead"}
)

// SeedApprovedBundle (signed with cfg.SigningKeyFile when set, as rules:
// pass System.SignedAs(eventsign.ServiceRules)) appends to the policy-bundle topic a BundleProposed of
// the bundle by SeedProposer and its approval by SeedApprover, with the ids
// rules gives them, so rules in the production profile starts with the
// bundle in force. files are named "<tenant>/<file>", as rules names a
// bundle directory's files.
func SeedApprovedBundle(t testing.TB, cfg eventlog.Config, topic, tenant string, files map[string][]byte) {
	t.Helper()
	hash := BundleHash(files)
	ref := &eventsv1.PolicyRef{ContentHash: hash, Version: versionOf(files)}
	proposed := &eventsv1.BundleProposed{Ref: ref, Proposer: SeedProposer, Round: 1}
	for name, content := range files {
		proposed.Files = append(proposed.Files, &eventsv1.PolicyBundleFile{Name: name, Content: content})
	}
	now := timestamppb.New(time.Now())
	proposal := &eventsv1.Event{EventId: eventlog.ID("policy-bundle", tenant, hash, "1", "proposed"), Tenant: tenant, OccurredAt: now,
		Producer: "rules", SchemaVersion: 1, Policy: ref, Payload: &eventsv1.Event_BundleProposed{BundleProposed: proposed}}
	review := &eventsv1.Event{EventId: eventlog.ID("policy-bundle", tenant, hash, "1", "reviewed"), Tenant: tenant, OccurredAt: now,
		Producer: "rules", SchemaVersion: 1, Policy: ref, CausationId: proposal.GetEventId(),
		Payload: &eventsv1.Event_BundleReviewed{BundleReviewed: &eventsv1.BundleReviewed{Ref: ref, Round: 1,
			Outcome: eventsv1.BundleReviewOutcome_BUNDLE_REVIEW_OUTCOME_APPROVED, Reviewer: SeedApprover, Proposer: SeedProposer}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, closeIdle := cfg.Client(10 * time.Second)
	defer closeIdle()
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatalf("create the policy-bundle topic: %v", err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		t.Fatalf("create the policy-bundle topic: %v", err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, AllowAutoTopicCreation: false}
	defer func() { _ = w.Close() }()
	for _, ev := range []*eventsv1.Event{proposal, review} {
		value, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		// Signed as rules would sign it (cfg.SigningKeyFile: System.SignedAs),
		// or the readers verifying against the key set refuse it.
		var headers []kafka.Header
		if cfg.SigningKeyFile != "" {
			signer, err := eventsign.LoadSigner(cfg.SigningKeyFile)
			if err != nil {
				t.Fatal(err)
			}
			headers = append(headers, kafka.Header{Key: eventsign.HeaderSignature, Value: signer.Sign(topic, []byte(tenant), value)})
		}
		for {
			err = w.WriteMessages(ctx, kafka.Message{Key: []byte(tenant), Value: value, Headers: headers})
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the topic just created may have no leader yet
		}
		if err != nil {
			t.Fatalf("seed the policy-bundle topic: %v", err)
		}
	}
}

// versionOf is the value of the first top-level "version:" line of files.
func versionOf(files map[string][]byte) string {
	for _, content := range files {
		for _, line := range strings.Split(string(content), "\n") {
			if v, ok := strings.CutPrefix(line, "version:"); ok {
				return strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
	}
	return ""
}
