package schema

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTimeIsStrictRFC3339(t *testing.T) {
	refused := []struct{ name, time string }{
		{"a one-digit hour, a comma and +24:00 together", "2025-05-09T4:07:00,5+24:00"},
		{"a one-digit hour", "2025-05-09T4:07:00Z"},
		{"a one-digit minute", "2025-05-09T14:7:00Z"},
		{"a one-digit second", "2025-05-09T14:07:0Z"},
		{"a one-digit month", "2025-5-09T14:07:00Z"},
		{"a one-digit day", "2025-05-9T14:07:00Z"},
		{"a two-digit year", "25-05-09T14:07:00Z"},
		{"a five-digit year", "12025-05-09T14:07:00Z"},
		{"a comma before the fraction", "2025-05-09T14:07:00,5Z"},
		{"a point with no fraction", "2025-05-09T14:07:00.Z"},
		{"an offset of +24:00", "2025-05-09T14:07:00+24:00"},
		{"an offset of -24:00", "2025-05-09T14:07:00-24:00"},
		{"an offset minute of 60", "2025-05-09T14:07:00+01:60"},
		{"an offset without its colon", "2025-05-09T14:07:00+0100"},
		{"an offset of hours alone", "2025-05-09T14:07:00+01"},
		{"an hour of 24", "2025-05-09T24:00:00Z"},
		{"a minute of 60", "2025-05-09T14:60:00Z"},
		{"a second of 61", "2025-05-09T14:07:61Z"},
		{"a second of 60 that is not 23:59:60 in UTC", "2025-05-09T14:07:60Z"},
		{"a second of 60 at 23:59 local time that is not 23:59 in UTC", "2016-12-31T23:59:60+01:00"},
		{"month 13", "2025-13-09T14:07:00Z"},
		{"month 0", "2025-00-09T14:07:00Z"},
		{"day 0", "2025-05-00T14:07:00Z"},
		{"day 32", "2025-05-32T14:07:00Z"},
		{"April 31", "2025-04-31T14:07:00Z"},
		{"February 29 of a common year", "2025-02-29T14:07:00Z"},
		{"February 29 of a century that is no leap year", "1900-02-29T14:07:00Z"},
		{"a space for the T", "2025-05-09 14:07:00Z"},
		{"no offset", "2025-05-09T14:07:00"},
		{"a date alone", "2025-05-09"},
		{"something after the offset", "2025-05-09T14:07:00Zx"},
		{"a UTC named, not Z", "2025-05-09T14:07:00UTC"},
		{"a sign before the year", "+2025-05-09T14:07:00Z"},
		{"a digit that is not ASCII", "2025-05-09T14:07:0\u0661Z"},
		{"slashes for dashes", "2025/05/09T14:07:00Z"},
	}
	for _, c := range refused {
		t.Run(c.name+" is refused", func(t *testing.T) {
			_, err := DecodeEvent([]byte(event(`,"time":"` + c.time + `"`)))
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "not an RFC 3339 timestamp") {
				t.Fatalf("err = %v, want the time refused", err)
			}
		})
	}
	accepted := []struct {
		name, time string
		want       time.Time
	}{
		{"UTC as Z", "2025-05-09T14:07:00Z", time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)},
		{"a lower-case t and z (RFC 3339 section 5.6's note)", "2025-05-09t14:07:00z", time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)},
		{"a positive offset", "2025-05-09T16:07:00+02:00", time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)},
		{"a negative offset with minutes", "2025-05-09T10:37:00-03:30", time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)},
		{"the unknown local offset -00:00", "2025-05-09T14:07:00-00:00", time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)},
		{"the largest offset, +23:59", "2025-05-10T14:06:00+23:59", time.Date(2025, 5, 9, 14, 7, 0, 0, time.UTC)},
		{"a fraction of one digit", "2025-05-09T14:07:00.5Z", time.Date(2025, 5, 9, 14, 7, 0, 500_000_000, time.UTC)},
		{"a fraction finer than nanoseconds, truncated", "2025-05-09T14:07:00.123456789987Z", time.Date(2025, 5, 9, 14, 7, 0, 123_456_789, time.UTC)},
		{"February 29 of a leap year", "2024-02-29T00:00:00Z", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"February 29 of a century that is a leap year", "2000-02-29T00:00:00Z", time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"a leap second at 23:59:60 UTC, read as the next day's first instant", "2016-12-31T23:59:60Z", time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"a leap second at 23:59:60 UTC written in another offset", "2017-01-01T00:59:60+01:00", time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"a leap second with a fraction", "2016-12-31T23:59:60.5Z", time.Date(2017, 1, 1, 0, 0, 0, 500_000_000, time.UTC)},
		{"the first year", "0000-01-01T00:00:00Z", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"the last year", "9999-12-31T23:59:59Z", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	for _, c := range accepted {
		t.Run(c.name+" is accepted", func(t *testing.T) {
			ev, err := DecodeEvent([]byte(event(`,"time":"` + c.time + `"`)))
			if err != nil {
				t.Fatal(err)
			}
			if !ev.Time.Equal(c.want) {
				t.Fatalf("time %v, want %v", ev.Time, c.want)
			}
		})
	}
}
