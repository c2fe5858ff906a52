package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// strictNumbers refuses the conversions mapstructure makes silently even
// with WeaklyTypedInput, which the loader needs only because environment
// overrides arrive as strings: a fraction into a whole-number key
// (samples: 2.7 became 2), a number too large for the key (YAML reads
// 99999999999999999999999 as a float, which became math.MinInt64), and
// true/false into a number or a number into true/false.
func strictNumbers(from, to reflect.Type, data any) (any, error) {
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if to == reflect.TypeOf(time.Duration(0)) {
			return data, nil // strings like 30s; a number is nanoseconds as before
		}
		bits := to.Bits()
		maxInt := int64(math.MaxInt64 >> (64 - bits))
		lo, hi := -math.Ldexp(1, bits-1), math.Ldexp(1, bits-1) // hi itself does not fit
		switch from.Kind() {
		case reflect.Float32, reflect.Float64:
			f := reflect.ValueOf(data).Float()
			if math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f >= hi {
				return nil, fmt.Errorf("expected a whole number, got %s, which is out of range (at most %d)", formatFloat(f), maxInt)
			}
			if f != math.Trunc(f) {
				return nil, fmt.Errorf("expected a whole number, got %s", formatFloat(f))
			}
		case reflect.Uint, reflect.Uint64, reflect.Uint32:
			if u := reflect.ValueOf(data).Uint(); u > uint64(maxInt) {
				return nil, fmt.Errorf("expected a whole number, got %d, which is out of range (at most %d)", u, maxInt)
			}
		case reflect.Bool:
			return nil, fmt.Errorf("expected a whole number, got %v", data)
		case reflect.String:
			s := reflect.ValueOf(data).String()
			if _, err := strconv.ParseInt(s, 0, bits); err != nil {
				if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
					return nil, fmt.Errorf("expected a whole number, got %q, which is out of range (at most %d)", s, maxInt)
				}
				return nil, fmt.Errorf("expected a whole number, got %q", s)
			}
		}
	case reflect.Float32, reflect.Float64:
		if from.Kind() == reflect.Bool {
			return nil, fmt.Errorf("expected a number, got %v", data)
		}
	case reflect.Bool:
		switch from.Kind() {
		case reflect.Bool:
		case reflect.String:
			if _, err := strconv.ParseBool(reflect.ValueOf(data).String()); err != nil {
				return nil, fmt.Errorf("expected true or false, got %q", data)
			}
		default:
			return nil, fmt.Errorf("expected true or false, got %v", data)
		}
	}
	return data, nil
}

// formatFloat shows a float as YAML would have it, without a wrapped or
// rounded integer standing in for it.
func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
