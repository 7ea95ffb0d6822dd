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
	value        func(r *Record) (any, error)
}

var ledgerColumns = []column{
	{"source", "text", func(r *Record) (any, error) { return r.Event.Source, nil }},
	{"id", "text", func(r *Record) (any, error) { return r.Event.ID, nil }},
	{"type", "text", func(r *Record) (any, error) { return r.Event.Type, nil }},
	{"subject", "text", func(r *Record) (any, error) { return nullable(r.Event.Subject), nil }},
	{"time", "timestamptz", func(r *Record) (any, error) {
		if r.Event.Time.IsZero() {
			return nil, nil
		}
		return r.Event.Time, nil
	}},
	{"datacontenttype", "text", func(r *Record) (any, error) { return nullable(r.Event.DataContentType), nil }},
	{"dataschema", "text", func(r *Record) (any, error) { return nullable(r.Event.DataSchema), nil }},
	{"data", "jsonb", func(r *Record) (any, error) {
		if r.Event.Data == nil {
			return nil, nil
		}
		return []byte(r.Event.Data), nil
	}},
	{"data_base64", "bytea", func(r *Record) (any, error) {
		if r.Event.DataBase64 == nil {
			return nil, nil
		}
		return r.Event.DataBase64, nil
	}},
	{"extensions", "jsonb", func(r *Record) (any, error) {
		if r.Event.Extensions == nil {
			return nil, nil
		}
		return json.Marshal(r.Event.Extensions)
	}},
	{"kafka_partition", "int", func(r *Record) (any, error) { return int32(r.Msg.Partition), nil }},
	{"kafka_offset", "bigint", func(r *Record) (any, error) { return r.Msg.Offset, nil }},
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// ColumnNames are the ledger columns an applied event fills, in order.
func ColumnNames() []string {
	names := make([]string, len(ledgerColumns))
	for i, c := range ledgerColumns {
		names[i] = c.name
	}
	return names
}

// Row returns r's values for ColumnNames, as COPY takes them.
func (r *Record) Row() ([]any, error) {
	row := make([]any, len(ledgerColumns))
	for i, c := range ledgerColumns {
		v, err := c.value(r)
		if err != nil {
			return nil, err
		}
		row[i] = v
	}
	return row, nil
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
