package targetdb

import (
	"encoding/json"
	"strings"
)

// column is one column of sluice_events that an applied event fills, with
// how a record fills it. This list is the one source of the ledger's shape
// in code: the staging table, the COPY and the INSERT are all derived from
// it (migrations, being history, spell it out; a test checks they agree).
type column struct {
	name, pgType string
	// appendBinary appends the record's value in COPY's binary format: its
	// length and bytes, or −1 for NULL (see EncodeCopy).
	appendBinary func(buf []byte, r *Record) ([]byte, error)
}

var ledgerColumns = []column{
	{"source", "text", func(buf []byte, r *Record) ([]byte, error) { return appendText(buf, r.Event.Source), nil }},
	{"id", "text", func(buf []byte, r *Record) ([]byte, error) { return appendText(buf, r.Event.ID), nil }},
	{"type", "text", func(buf []byte, r *Record) ([]byte, error) { return appendText(buf, r.Event.Type), nil }},
	{"subject", "text", func(buf []byte, r *Record) ([]byte, error) { return appendNullableText(buf, r.Event.Subject), nil }},
	{"time", "timestamptz", func(buf []byte, r *Record) ([]byte, error) { return appendTimestamptz(buf, r.Event.Time), nil }},
	{"datacontenttype", "text", func(buf []byte, r *Record) ([]byte, error) {
		return appendNullableText(buf, r.Event.DataContentType), nil
	}},
	{"dataschema", "text", func(buf []byte, r *Record) ([]byte, error) { return appendNullableText(buf, r.Event.DataSchema), nil }},
	{"data", "jsonb", func(buf []byte, r *Record) ([]byte, error) { return appendJSONB(buf, r.Event.Data), nil }},
	{"data_base64", "bytea", func(buf []byte, r *Record) ([]byte, error) { return appendBytea(buf, r.Event.DataBase64), nil }},
	{"extensions", "jsonb", func(buf []byte, r *Record) ([]byte, error) {
		if r.Event.Extensions == nil {
			return appendNull(buf), nil
		}
		ext, err := json.Marshal(r.Event.Extensions)
		if err != nil {
			return buf, err
		}
		return appendJSONB(buf, ext), nil
	}},
	{"kafka_partition", "int", func(buf []byte, r *Record) ([]byte, error) { return appendInt4(buf, int32(r.Msg.Partition)), nil }},
	{"kafka_offset", "bigint", func(buf []byte, r *Record) ([]byte, error) { return appendInt8(buf, r.Msg.Offset), nil }},
}

// ColumnNames are the ledger columns an applied event fills, in order.
func ColumnNames() []string {
	names := make([]string, len(ledgerColumns))
	for i, c := range ledgerColumns {
		names[i] = c.name
	}
	return names
}

// stagingTables are created once per session: sluice_staging takes a
// batch's COPY; sluice_batch holds the batch's new events, for projections.
// They deliberately do not use LIKE sluice_events: creating them must not
// need a lock on the real table, which may be exactly what someone else is
// holding.
var stagingTables = func() string {
	defs := make([]string, len(ledgerColumns))
	for i, c := range ledgerColumns {
		defs[i] = c.name + " " + c.pgType
	}
	cols := strings.Join(defs, ", ")
	return "CREATE TEMP TABLE IF NOT EXISTS sluice_staging (" + cols + ") ON COMMIT DELETE ROWS; " +
		"CREATE TEMP TABLE IF NOT EXISTS sluice_batch (" + cols + ") ON COMMIT DELETE ROWS"
}()

// insertFromStaging needs no DISTINCT: ON CONFLICT DO NOTHING also skips a
// second copy of an event within the same batch, and by contract every copy
// of a (source, id) is the same event.
var insertFromStaging = func() string {
	cols := strings.Join(ColumnNames(), ", ")
	return "INSERT INTO sluice_events (" + cols + ") SELECT " + cols + " FROM sluice_staging ON CONFLICT (source, id) DO NOTHING"
}()

// insertKeepingNew is insertFromStaging that also keeps, in sluice_batch,
// the rows it inserted — the batch's new events — for the projections. The
// join on the log position picks the very copy the ledger took.
var insertKeepingNew = func() string {
	cols := strings.Join(ColumnNames(), ", ")
	return "WITH inserted AS (INSERT INTO sluice_events (" + cols + ") SELECT " + cols +
		" FROM sluice_staging ON CONFLICT (source, id) DO NOTHING RETURNING source, id, kafka_partition, kafka_offset)" +
		" INSERT INTO sluice_batch SELECT s.* FROM sluice_staging s JOIN inserted USING (source, id, kafka_partition, kafka_offset)"
}()
