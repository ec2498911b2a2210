package main

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// appendPrintable appends s to dst with what a terminal would act on made
// visible, so that a message cannot inject escape sequences: control
// characters (C0, DEL, C1) become \u00XX, which inside a JSON string means
// the same character, and bytes that are not UTF-8 become \xNN, or U+FFFD
// when s is JSON (what a Python consumer's decoder would make of them).
func appendPrintable(dst, s []byte, isJSON bool) []byte {
	for len(s) > 0 {
		c := s[0]
		if c >= 0x20 && c < 0x7f {
			dst = append(dst, c)
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRune(s)
		switch {
		case r == utf8.RuneError && size == 1 && isJSON:
			dst = append(dst, `\ufffd`...)
		case r == utf8.RuneError && size == 1:
			dst = fmt.Appendf(dst, `\x%02x`, c)
		case unicode.IsControl(r):
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}
