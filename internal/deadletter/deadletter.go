// Package deadletter owns the format of a record in a target's dead-letter
// topic (sluice.dlq.<target>): the original record, untouched, with headers
// naming the error, its class, the target, and where the record came from.
// The applier writes these records (Wrap); operator tools read them (Parse)
// and replay the original (Letter.Original).
//
//	dlqRecord := deadletter.Wrap(msg, err, "permanent", "b", time.Now())
//	letter := deadletter.Parse(dlqRecord)
//	orig := letter.Original() // topic, partition, offset and headers as first published
package deadletter

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/schema"
)

// The headers sluice adds to a dead-lettered record.
const (
	HeaderError     = "sluice-error"
	HeaderClass     = "sluice-error-class"
	HeaderTarget    = "sluice-target"
	HeaderTopic     = "sluice-original-topic"
	HeaderPartition = "sluice-original-partition"
	HeaderOffset    = "sluice-original-offset"
	HeaderFailedAt  = "sluice-failed-at"
	// HeaderOmitted is set, instead of the value, on a record too large to
	// be dead-lettered whole: it names the value's size and SHA-256. The
	// original stays in the events topic while retention holds it.
	HeaderOmitted = "sluice-value-omitted"
)

// MaxErrorBytes bounds the error text carried in a header: a database error
// can quote the whole offending value.
const MaxErrorBytes = 4096

// Wrap returns the DLQ record of m: its key, value and headers, plus the
// headers above. A record that is itself a dead letter (a replay that failed
// again) is first unwrapped, so it carries one set of sluice headers.
func Wrap(m kafka.Message, cause error, class, target string, at time.Time) kafka.Message {
	if _, ok := header(m, HeaderOffset); ok {
		m = Parse(m).Original()
	}
	headers := append([]kafka.Header{}, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(truncate(cause.Error(), MaxErrorBytes))},
		kafka.Header{Key: HeaderClass, Value: []byte(class)},
		kafka.Header{Key: HeaderTarget, Value: []byte(target)},
		kafka.Header{Key: HeaderTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafka.Header{Key: HeaderFailedAt, Value: []byte(at.UTC().Format(time.RFC3339Nano))},
	)
	return kafka.Message{Key: m.Key, Value: m.Value, Headers: headers}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Fit returns m as it is when it fits in maxBytes; otherwise m without its
// value, with HeaderOmitted naming the value's size and SHA-256. A dead
// letter must always be written: a record that cannot be would stall its
// partition for good.
func Fit(m kafka.Message, maxBytes int) kafka.Message {
	size := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		size += len(h.Key) + len(h.Value) + 16
	}
	if size+1024 <= maxBytes { // 1 KiB for the record's own framing
		return m
	}
	sum := sha256.Sum256(m.Value)
	m.Headers = append(m.Headers, kafka.Header{Key: HeaderOmitted,
		Value: fmt.Appendf(nil, "%d bytes, sha256 %x", len(m.Value), sum)})
	m.Value = nil
	return m
}

func header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// Letter is one record of a target's DLQ, as operators see it.
type Letter struct {
	DLQOffset         int64  `json:"dlq_offset"`
	Source            string `json:"source"`
	ID                string `json:"id"`
	Error             string `json:"error"`
	OriginalTopic     string `json:"original_topic,omitempty"`
	OriginalPartition int    `json:"original_partition"`
	OriginalOffset    int64  `json:"original_offset"`
	FailedAt          string `json:"failed_at"`
	// Omitted is set when the record was too large to be kept whole: its
	// value's size and SHA-256.
	Omitted string `json:"value_omitted,omitempty"`
	record  kafka.Message
}

// Parse reads a DLQ record.
func Parse(m kafka.Message) Letter {
	l := Letter{DLQOffset: m.Offset, record: m}
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderError:
			l.Error = v
		case HeaderTopic:
			l.OriginalTopic = v
		case HeaderPartition:
			l.OriginalPartition, _ = strconv.Atoi(v)
		case HeaderOffset:
			l.OriginalOffset, _ = strconv.ParseInt(v, 10, 64)
		case HeaderFailedAt:
			l.FailedAt = v
		case HeaderOmitted:
			l.Omitted = v
		}
	}
	if ev, err := schema.DecodeEvent(m.Value); err == nil {
		l.Source, l.ID = ev.Source, ev.ID
	}
	return l
}

// Original is the record as it was first published: its own headers only,
// and its original topic, partition and offset.
func (l Letter) Original() kafka.Message {
	m := l.record
	var keep []kafka.Header
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderError, HeaderClass, HeaderTarget, HeaderFailedAt, HeaderTopic, HeaderPartition, HeaderOffset, HeaderOmitted:
		default:
			keep = append(keep, h)
		}
	}
	m.Headers, m.Topic, m.Partition, m.Offset = keep, l.OriginalTopic, l.OriginalPartition, l.OriginalOffset
	return m
}
