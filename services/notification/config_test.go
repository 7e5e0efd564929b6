package notification_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/platform/servicemain"
	"github.com/herald-health/herald/services/notification"
)

func TestScheduleWorkersMustLeaveAWorkerForTheFastLanes(t *testing.T) {
	valid := func() notification.Config {
		c := notification.DefaultConfig()
		c.Security = servicemain.DevelopmentInsecure()
		c.AckLinkSecret = "0123456789abcdef0123456789abcdef"
		return c
	}
	require.NoError(t, valid().Validate())

	for _, tc := range []struct {
		workers, schedule int
		wantErr           string
	}{
		{workers: 32, schedule: 0, wantErr: "setting schedule-workers must be at least 1"},
		{workers: 4, schedule: 4, wantErr: "setting schedule-workers must be less than workers"},
		{workers: 1, schedule: 4}, // one worker serves both
		{workers: 4, schedule: 3},
	} {
		c := valid()
		c.Workers, c.ScheduleWorkers = tc.workers, tc.schedule
		err := c.Validate()
		if tc.wantErr == "" {
			require.NoError(t, err, "workers %d, schedule-workers %d", tc.workers, tc.schedule)
			continue
		}
		require.ErrorContains(t, err, tc.wantErr)
	}
}
