package schema

import "errors"

// ErrInvalidEvent is returned (wrapped, with the attribute at fault) by
// DecodeEvent and DecodeRequest when an event breaks the envelope contract.
var ErrInvalidEvent = errors.New("invalid event")

// ErrMalformedBody is returned (wrapped) by DecodeRequest when the body is not
// JSON of the shape its media type promises.
var ErrMalformedBody = errors.New("malformed body")

// ErrUnsupportedMediaType is returned by ParseMediaType when the Content-Type
// is none of the three that the ingest API accepts.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// ErrUnknownVersion is returned (wrapped) by Migrate when asked for a schema
// version that no embedded migration reaches.
var ErrUnknownVersion = errors.New("unknown schema version")

// ErrBadMigration is returned (wrapped) by ReadMigrations for a migrations
// directory whose files are misnamed or whose versions have gaps.
var ErrBadMigration = errors.New("bad migration")

// ErrTooManyEvents is returned (wrapped) by DecodeRequest for a batch of
// more events than the request may hold.
var ErrTooManyEvents = errors.New("too many events")
