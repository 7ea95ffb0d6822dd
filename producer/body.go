package producer

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// readBody reads a request body of at most limit bytes, decompressed: gzip
// is the one Content-Encoding accepted (identity aside). It returns the
// answer to send when the body cannot be taken.
func readBody(r *http.Request, limit int64) ([]byte, *answer) {
	var in io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	enc := contentEncoding(r.Header)
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			a := fail(http.StatusBadRequest, "Content-Encoding: gzip, but the body is not gzip data")
			return nil, &a
		}
		defer zr.Close()
		// The limit holds for the decompressed body too: a small bomb must
		// not expand into memory.
		in = io.LimitReader(zr, limit+1)
	default:
		a := fail(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported (gzip alone, or none)", enc))
		a.header = map[string]string{"Accept-Encoding": "gzip"}
		return nil, &a
	}
	body, err := io.ReadAll(in)
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge), err == nil && int64(len(body)) > limit:
		a := fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than the limit of %d bytes", limit))
		return nil, &a
	case errors.As(err, &netErr) && netErr.Timeout():
		a := fail(http.StatusRequestTimeout, "the request body did not arrive in time")
		a.header = map[string]string{"Connection": "close"}
		return nil, &a
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF) && enc != "" && enc != "identity":
		a := fail(http.StatusBadRequest, "Content-Encoding: gzip, but the body is not valid gzip data")
		return nil, &a
	case err != nil:
		a := fail(http.StatusBadRequest, "the request body could not be read")
		return nil, &a
	}
	return body, nil
}

// contentEncoding is the request's Content-Encoding, lower-cased, whole:
// every line of the header, comma-joined. A list of codings ("gzip, br",
// or "gzip" on two lines) is none of the values readBody takes, so it is
// refused with 415: reading its first coding alone would decode a body
// other than the one sent, and no publisher needs more than one coding.
func contentEncoding(h http.Header) string {
	var codings []string
	for _, line := range h.Values("Content-Encoding") {
		for c := range strings.SplitSeq(line, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" {
				codings = append(codings, c)
			}
		}
	}
	return strings.Join(codings, ", ")
}
