package bundle_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

func TestDemoBundlesParse(t *testing.T) {
	for _, tenant := range []string{"RZZ", "RZY"} {
		t.Run(tenant, func(t *testing.T) {
			b := mustParse(t, demoFiles(t, tenant))
			require.Equal(t, tenant, b.Tenant)
			require.NotEmpty(t, b.Version)
			require.Len(t, b.Hash, 64)
			for _, code := range bundle.StandardCodes() {
				_, ok := b.Category(code)
				require.True(t, ok, "category %s", code)
			}
			require.NotEmpty(t, b.Rules)
			require.NotEmpty(t, b.Rotas)
			// Every category's policy has three or four steps and ends at
			// the trust's fail-safe officer.
			for _, c := range b.Categories {
				p := b.Policies[c.Policy]
				require.GreaterOrEqual(t, len(p.Steps), 3, p.ID)
				require.LessOrEqual(t, len(p.Steps), 4, p.ID)
				last := p.Steps[len(p.Steps)-1]
				kinds := []eventsv1.TargetKind{}
				for _, tg := range last.Targets {
					kinds = append(kinds, tg.Kind)
				}
				require.Contains(t, kinds, eventsv1.TargetKind_TARGET_KIND_FAILSAFE_OFFICER, p.ID)
				// Every category's policy names who is told of an
				// acknowledge-clock breach and reminds the fail-safe
				// officers; the snapshot carries both.
				snap, ok := b.Snapshot(p.ID)
				require.True(t, ok)
				require.Positive(t, snap.GetFailsafeReminderEvery().AsDuration(), p.ID)
				clocks := map[eventsv1.ClockKind]int{}
				for _, n := range snap.GetBreachNotices() {
					clocks[n.GetClock()] = len(n.GetTargets())
					require.NotEmpty(t, n.GetChannels(), p.ID)
				}
				require.Positive(t, clocks[eventsv1.ClockKind_CLOCK_KIND_ACKNOWLEDGE], p.ID)
			}
			// Synthetic contact points only.
			for _, person := range b.People {
				for _, c := range person.Contacts {
					switch c.Channel {
					case eventsv1.Channel_CHANNEL_SMS:
						require.Regexp(t, `^\+447700900\d{3}$`, c.Address)
					default:
						require.Regexp(t, `@[a-z]+\.example\.nhs\.uk$`, c.Address)
					}
				}
			}
		})
	}
}
