package schema

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"
)

// The media types of the ingest API.
const (
	MediaTypeEvent = "application/cloudevents+json"
	MediaTypeBatch = "application/cloudevents-batch+json"
	MediaTypeJSON  = "application/json"
)

// ParseMediaType returns the media type of a Content-Type header when it is
// one the ingest API accepts, and ErrUnsupportedMediaType otherwise.
func ParseMediaType(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("%w: %q", ErrUnsupportedMediaType, contentType)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "", fmt.Errorf("%w: charset %q (only utf-8)", ErrUnsupportedMediaType, cs)
	}
	switch mt {
	case MediaTypeEvent, MediaTypeBatch, MediaTypeJSON:
		return mt, nil
	}
	return "", fmt.Errorf("%w: %q (want %s, %s or %s)", ErrUnsupportedMediaType, mt, MediaTypeEvent, MediaTypeBatch, MediaTypeJSON)
}

// EventError is the fault of one event of a request, by its index in the
// request (0 for a single event).
type EventError struct {
	Index int
	Err   error
}

// DecodeRequest decodes an ingest request body of the given media type (as
// returned by ParseMediaType) into its events. A body that is not JSON of
// the right shape returns an error wrapping ErrMalformedBody; a batch of
// more than maxEvents events (0: no bound) returns ErrTooManyEvents before
// any of them is decoded; otherwise every invalid event is reported in the
// returned slice, and the request is acceptable only when that slice is
// empty. An empty batch is valid: it holds no event.
func DecodeRequest(mediaType string, body []byte, maxEvents int) ([]Event, []EventError, error) {
	body = trimSpace(body)
	if len(body) == 0 {
		return nil, nil, fmt.Errorf("%w: empty body", ErrMalformedBody)
	}
	isArray := body[0] == '['
	switch {
	case mediaType == MediaTypeEvent && isArray:
		return nil, nil, fmt.Errorf("%w: %s holds one event, got an array (use %s)", ErrMalformedBody, MediaTypeEvent, MediaTypeBatch)
	case mediaType == MediaTypeBatch && !isArray:
		return nil, nil, fmt.Errorf("%w: %s holds an array of events", ErrMalformedBody, MediaTypeBatch)
	}
	var raws []json.RawMessage
	if isArray {
		var err error
		if raws, err = splitBatch(body, maxEvents); err != nil {
			return nil, nil, err
		}
	} else {
		if !validJSON(body) {
			return nil, nil, fmt.Errorf("%w: not valid JSON", ErrMalformedBody)
		}
		raws = []json.RawMessage{body}
	}
	events := make([]Event, len(raws))
	var faults []EventError
	for i, raw := range raws {
		ev, err := decodeEvent(raw, true) // the body was validated whole
		if err != nil {
			faults = append(faults, EventError{Index: i, Err: err})
			continue
		}
		events[i] = ev
	}
	return events, faults, nil
}

// splitBatch cuts a JSON array into its elements, counting them as it goes:
// past maxEvents it stops, so that a hostile batch of a million empty
// objects costs a scan of the body, not a million decoded events.
func splitBatch(body []byte, maxEvents int) ([]json.RawMessage, error) {
	if !validJSON(body) {
		if end := valueEnd(body, 0); end < len(body) && validJSON(body[:end]) {
			return nil, fmt.Errorf("%w: not valid JSON (something follows the batch)", ErrMalformedBody)
		}
		return nil, fmt.Errorf("%w: not valid JSON", ErrMalformedBody)
	}
	raws, ok := arrayElements(body, maxEvents)
	if !ok {
		return nil, fmt.Errorf("%w: more than %d events in one request", ErrTooManyEvents, maxEvents)
	}
	return raws, nil
}
