// Package schema owns the contract both sides of sluice share: the event
// envelope (a CloudEvent in JSON structured mode), its validation, and the
// SQL migrations that shape every target database.
//
// The producer validates each event with [DecodeEvent] before it is appended
// to Kafka; the consumer decodes the record value with the same function, so a
// record that the producer would have refused can never be applied silently.
//
//	ev, err := schema.DecodeEvent(raw)
//	if err != nil {
//		// err wraps ErrInvalidEvent and names the attribute at fault
//	}
//	key := ev.PartitionKey() // subject when present, else source
//
// Migrations are embedded; [Migrate] applies them in order, each in its own
// transaction under a lock_timeout, recording each version in
// sluice_schema_migrations.
package schema
