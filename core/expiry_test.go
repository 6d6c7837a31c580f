package core

import (
	"testing"
	"time"
)

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := now.Add(90 * time.Minute)
	tests := []struct {
		e         Expiry
		deadline  time.Time
		maxAge    int
		hasMaxAge bool
	}{
		{OnSessionEnd(), now.Add(DefaultSessionEndLifetime), 0, false},
		{Expiry{}, now.Add(DefaultSessionEndLifetime), 0, false},
		{OnInactivity(10 * time.Second), now.Add(10 * time.Second), 10, true},
		{AtDateTime(at), at, 5400, true},
		{AtDateTime(now.Add(-time.Hour)), now.Add(-time.Hour), 0, true}, // never negative
		{AtDateTime(now.Add(1500 * time.Millisecond)), now.Add(1500 * time.Millisecond), 1, true},
	}
	for _, tc := range tests {
		if got := tc.e.Deadline(now, 0); !got.Equal(tc.deadline) {
			t.Errorf("%v.Deadline = %v, want %v", tc.e, got, tc.deadline)
		}
		if got, ok := tc.e.MaxAge(now); got != tc.maxAge || ok != tc.hasMaxAge {
			t.Errorf("%v.MaxAge = %d, %v; want %d, %v", tc.e, got, ok, tc.maxAge, tc.hasMaxAge)
		}
	}
	if got := OnSessionEnd().Deadline(now, time.Hour); !got.Equal(now.Add(time.Hour)) {
		t.Errorf("custom session-end lifetime ignored: %v", got)
	}
	local := time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 3600))
	if d, _ := AtDateTime(local).DateTime(); d.Location() != time.UTC || !d.Equal(local) {
		t.Errorf("AtDateTime not normalised to UTC: %v", d)
	}
}

func TestExpiryRenewedInSteps(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := now.Add(time.Hour)
	tests := []struct {
		name   string
		e      Expiry
		stored time.Time
		want   time.Time
	}{
		// OnSessionEnd: two weeks, so the step is capped at a minute.
		{"session end, 59 s later", OnSessionEnd(), now.Add(DefaultSessionEndLifetime - 59*time.Second), now.Add(DefaultSessionEndLifetime - 59*time.Second)},
		{"session end, 61 s later", OnSessionEnd(), now.Add(DefaultSessionEndLifetime - 61*time.Second), now.Add(DefaultSessionEndLifetime)},
		// OnInactivity(10 s): the step is 100 ms.
		{"inactivity, 50 ms later", OnInactivity(10 * time.Second), now.Add(9950 * time.Millisecond), now.Add(9950 * time.Millisecond)},
		{"inactivity, 1 s later", OnInactivity(10 * time.Second), now.Add(9 * time.Second), now.Add(10 * time.Second)},
		// A shorter expiry set meanwhile always takes effect.
		{"shortened", OnInactivity(10 * time.Second), now.Add(time.Hour), now.Add(10 * time.Second)},
		{"fixed date", AtDateTime(at), now.Add(59 * time.Minute), at},
	}
	for _, tc := range tests {
		if got := tc.e.renewed(tc.stored, now, 0); !got.Equal(tc.want) {
			t.Errorf("%s: renewed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
