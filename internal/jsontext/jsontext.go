// Package jsontext writes JSON string literals the way sluice stores what it
// was sent: escaping only what JSON requires (a quote, a backslash, a
// control byte), where encoding/json also escapes "<", ">", "&" and U+2028/9
// and turns invalid UTF-8 into U+FFFD. Used by binary mode, which turns
// ce-* headers into attributes, and by the client, which builds events.
//
//	buf = jsontext.AppendString(buf, `say "hi"`) // "say \"hi\""
package jsontext

// AppendString appends s to dst as a JSON string. Bytes that are not valid
// UTF-8 are written as they are, for the decoder to refuse by name.
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
