package ociserver

import (
	"fmt"
	"strconv"
	"strings"
)

// rangeSpec is a single byte range as a client asked for it, before the
// blob's size is known: "bytes=first-last", "bytes=first-" or "bytes=-suffix".
type rangeSpec struct {
	first, last int64 // last is -1 for an open range
	suffix      int64 // > 0 for a suffix range; first and last are unused then
}

// byteRange is an inclusive span [start, end] of a blob.
type byteRange struct{ start, end int64 }

func (r byteRange) length() int64 { return r.end - r.start + 1 }

// errRange is answered with 416 Range Not Satisfiable.
var errRange = NewError(CodeRangeInvalid, "requested range not satisfiable")

// parseRange parses a Range header. ok is false when there is none, or
// when it is in a unit other than bytes, which RFC 9110 says to ignore.
// A syntactically broken, inverted or multi-range request is refused:
// no registry client sends one.
func parseRange(header string) (spec rangeSpec, ok bool, err error) {
	if header == "" {
		return rangeSpec{}, false, nil
	}
	set, isBytes := strings.CutPrefix(header, "bytes=")
	if !isBytes {
		return rangeSpec{}, false, nil
	}
	set = strings.TrimSpace(set)
	if strings.Contains(set, ",") {
		return rangeSpec{}, false, errRange
	}
	firstStr, lastStr, found := strings.Cut(set, "-")
	if !found {
		return rangeSpec{}, false, errRange
	}
	if firstStr == "" {
		n, err := parseOffset(lastStr)
		if err != nil || n == 0 {
			return rangeSpec{}, false, errRange
		}
		return rangeSpec{suffix: n}, true, nil
	}
	first, err := parseOffset(firstStr)
	if err != nil {
		return rangeSpec{}, false, errRange
	}
	if lastStr == "" {
		return rangeSpec{first: first, last: -1}, true, nil
	}
	last, err := parseOffset(lastStr)
	if err != nil || last < first {
		return rangeSpec{}, false, errRange
	}
	return rangeSpec{first: first, last: last}, true, nil
}

func parseOffset(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a byte offset: %q", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

// startHint is where reading can begin before the size is known.
func (s rangeSpec) startHint() int64 {
	if s.suffix > 0 {
		return 0
	}
	return s.first
}

// resolve fits the spec to a blob of the given size.
func (s rangeSpec) resolve(size int64) (byteRange, error) {
	if size <= 0 {
		return byteRange{}, errRange
	}
	if s.suffix > 0 {
		return byteRange{start: max(0, size-s.suffix), end: size - 1}, nil
	}
	if s.first >= size {
		return byteRange{}, errRange
	}
	end := size - 1
	if s.last >= 0 && s.last < end {
		end = s.last
	}
	return byteRange{start: s.first, end: end}, nil
}
