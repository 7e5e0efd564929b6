package grpcapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/identity"
)

// TestCallerKeyIsThePersonElseTheService: people behind one relaying
// service are counted apart; a service on its own account is one caller.
func TestCallerKeyIsThePersonElseTheService(t *testing.T) {
	console := "spiffe://herald.dev/ns/herald/sa/console"
	person := func(sub string) context.Context {
		return identity.NewContext(context.Background(), identity.Caller{Service: console,
			Person: &identity.Person{Issuer: "https://cis2.example", Subject: sub}})
	}
	service := identity.NewContext(context.Background(), identity.Caller{Service: console})
	require.NotEqual(t, callerKey(person("a")), callerKey(person("b")))
	require.Equal(t, callerKey(person("a")), callerKey(person("a")))
	require.Equal(t, "service:"+console, callerKey(service))

	l := &watchLimit{max: 1, open: map[string]int{}}
	require.True(t, l.acquire(callerKey(person("a"))))
	require.False(t, l.acquire(callerKey(person("a"))), "the same person's second stream")
	require.True(t, l.acquire(callerKey(person("b"))), "another person behind the same console")
	l.release(callerKey(person("a")))
	require.True(t, l.acquire(callerKey(person("a"))))
}
