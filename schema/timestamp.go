package schema

import (
	"fmt"
	"time"
)

// parseTime parses the "time" attribute, which CloudEvents requires to be an
// RFC 3339 timestamp; "" (absent) is the zero time.
func parseTime(text string) (time.Time, error) {
	if text == "" {
		return time.Time{}, nil
	}
	t, ok := parseRFC3339(text)
	if !ok {
		return time.Time{}, fmt.Errorf("%w: \"time\" %q is not an RFC 3339 timestamp", ErrInvalidEvent, text)
	}
	return t, nil
}

// parseRFC3339 parses s as RFC 3339's date-time (section 5.6), to the
// letter:
//
//	YYYY-MM-DDTHH:MM:SS[.F…](Z|+HH:MM|-HH:MM)
//
// every field two digits but the year's four and the fraction's one or
// more, a period before the fraction, "T" and "Z" in either case (the
// section's note allows "t" and "z"). time.Parse is not the reference: for
// text its RFC 3339 fast path refuses, it falls back to its layout parser,
// which takes a one-digit hour, a comma before the fraction and an offset
// of +24:00 — none of them RFC 3339.
//
// The ranges are section 5.7's: month 01–12, day within its month and
// year, hour 00–23, minute 00–59, second 00–60, offset hour 00–23 and
// minute 00–59. A leap second (60) is the last second of a UTC day, and
// which days have one is the IERS's to say: knowing that table is beyond a
// decoder, so the rule here is that 60 is accepted only when the time in
// UTC is 23:59:60, whatever the day. It reads as the first instant of the
// next day: Go's time has no leap seconds.
func parseRFC3339(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") ||
		s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, month, day := digits(s[0:4]), digits(s[5:7]), digits(s[8:10])
	hour, minute, sec := digits(s[11:13]), digits(s[14:16]), digits(s[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(year, time.Month(month)) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 60 {
		return time.Time{}, false
	}
	rest := s[19:]
	nsec := 0
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 {
			return time.Time{}, false
		}
		// Nanoseconds are the first nine digits; the rest is finer than
		// time.Time holds, and is truncated as time.Parse does.
		for i := 1; i <= 9; i++ {
			nsec *= 10
			if i < n {
				nsec += int(rest[i] - '0')
			}
		}
		rest = rest[n:]
	}
	loc := time.UTC
	switch {
	case rest == "Z" || rest == "z":
	case len(rest) == len("+07:00") && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, om := digits(rest[1:3]), digits(rest[4:6])
		if oh < 0 || oh > 23 || om < 0 || om > 59 {
			return time.Time{}, false
		}
		offset := (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
		loc = time.FixedZone("", offset)
	default:
		return time.Time{}, false
	}
	leap := sec == 60
	if leap {
		sec = 59
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if leap {
		if u := t.UTC(); u.Hour() != 23 || u.Minute() != 59 {
			return time.Time{}, false
		}
		t = t.Add(time.Second)
	}
	return t, true
}

// digits is the value of s, ASCII digits only, or -1.
func digits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return -1
		}
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// daysIn is the number of days of month in year.
func daysIn(year int, month time.Month) int {
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
