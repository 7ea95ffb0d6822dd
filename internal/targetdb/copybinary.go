package targetdb

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// COPY's binary format (PostgreSQL's "COPY … FROM STDIN BINARY"), written
// here rather than by pgx because the applier knows every column's type in
// advance: a batch is encoded before a session is taken from the pool, so a
// session is held only while the bytes travel and the server works, and no
// round trip is spent asking the server for the column types.

var (
	copySignature = []byte("PGCOPY\n\xff\r\n\x00")
	// copyTrailer is the tuple count −1 that ends the data.
	copyTrailer = []byte{0xff, 0xff}
	// pgEpochMicros is 2000-01-01 UTC, where PostgreSQL's timestamps count
	// from, in microseconds since the Unix epoch.
	pgEpochMicros = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
)

// EncodeCopy encodes recs' ledger rows (ColumnNames, in order) as the whole
// input of a COPY in binary format: CopyStatement's. Every record must be
// decodable.
func EncodeCopy(recs []Record) ([]byte, error) {
	// A typical small event takes ~250 bytes of columns; growing past the
	// guess costs a copy, not a failure.
	buf := make([]byte, 0, 19+len(recs)*(2+len(ledgerColumns)*4+256)+2)
	buf = append(buf, copySignature...)
	buf = binary.BigEndian.AppendUint32(buf, 0) // flags
	buf = binary.BigEndian.AppendUint32(buf, 0) // header extension length
	for i := range recs {
		r := &recs[i]
		if r.DecodeErr != nil {
			return nil, r.DecodeErr
		}
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(ledgerColumns)))
		for _, c := range ledgerColumns {
			var err error
			if buf, err = c.appendBinary(buf, r); err != nil {
				return nil, fmt.Errorf("record %d/%d: column %s: %w", r.Msg.Partition, r.Msg.Offset, c.name, err)
			}
		}
	}
	return append(buf, copyTrailer...), nil
}

// CopyStatement is the COPY that takes EncodeCopy's output into table.
func CopyStatement(table string) string {
	return "COPY " + table + " (" + strings.Join(ColumnNames(), ", ") + ") FROM STDIN BINARY"
}

func appendNull(buf []byte) []byte { return binary.BigEndian.AppendUint32(buf, 0xffffffff) }

func appendText(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

// appendNullableText writes "" as NULL: an absent optional attribute.
func appendNullableText(buf []byte, s string) []byte {
	if s == "" {
		return appendNull(buf)
	}
	return appendText(buf, s)
}

// appendTimestamptz writes the zero time (an absent attribute) as NULL.
// Sub-microsecond digits are dropped, as PostgreSQL keeps microseconds.
func appendTimestamptz(buf []byte, t time.Time) []byte {
	if t.IsZero() {
		return appendNull(buf)
	}
	buf = binary.BigEndian.AppendUint32(buf, 8)
	return binary.BigEndian.AppendUint64(buf, uint64(t.UnixMicro()-pgEpochMicros))
}

// appendJSONB writes JSON text as jsonb's binary form: a version byte (1)
// and the text, which the server parses. nil is NULL.
func appendJSONB(buf []byte, doc []byte) []byte {
	if doc == nil {
		return appendNull(buf)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(doc)+1))
	buf = append(buf, 1)
	return append(buf, doc...)
}

func appendBytea(buf []byte, b []byte) []byte {
	if b == nil {
		return appendNull(buf)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...)
}

func appendInt4(buf []byte, v int32) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 4)
	return binary.BigEndian.AppendUint32(buf, uint32(v))
}

func appendInt8(buf []byte, v int64) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 8)
	return binary.BigEndian.AppendUint64(buf, uint64(v))
}
