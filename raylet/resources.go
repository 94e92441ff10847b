package raylet

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/goray/goray/protos"
)

// Resource names with special meaning.
const (
	CPU    = "CPU"
	GPU    = "GPU"
	Memory = "memory"
)

// resourceUnit is the fixed-point scale of quantities, as Ray's: fractional
// requests such as 0.5 CPU add up exactly.
const resourceUnit = 10000

// ResourceSet is a set of resource quantities in fixed point. The zero value
// is empty. It is a value type: methods return new sets.
type ResourceSet map[string]int64

// Bounds of resource sets, which come from peers (lease requests, bundle
// reservations, other nodes' reports) as well as from configuration.
const (
	// MaxResourceQuantity is the largest quantity of one resource, in
	// natural units: 100 TB of "memory" in bytes fits, and so does the sum
	// of a few thousand such quantities in fixed point (int64), which a
	// larger value would overflow and turn negative.
	MaxResourceQuantity = 1e14
	// maxResourceNameLen bounds a resource name (placement group
	// resources, the longest goray makes, take about 60 bytes).
	maxResourceNameLen = 256
	// maxResourceNames bounds the names in one set.
	maxResourceNames = 1024
)

// ErrBadResources is wrapped by errors about resource sets that cannot be
// held: negative, non-finite or too large quantities, bad names.
var ErrBadResources = errors.New("invalid resources")

// FromProto converts wire quantities, rejecting negative, non-finite or
// too large ones and bad names.
func FromProto(r *protos.Resources) (ResourceSet, error) {
	amounts := r.GetAmounts()
	if len(amounts) > maxResourceNames {
		return nil, fmt.Errorf("%w: %d resources, at most %d", ErrBadResources, len(amounts), maxResourceNames)
	}
	out := make(ResourceSet, len(amounts))
	for name, v := range amounts {
		if err := checkQuantity(name, v); err != nil {
			return nil, err
		}
		if q := int64(math.Round(v * resourceUnit)); q > 0 {
			out[name] = q
		}
	}
	return out, nil
}

// checkQuantity validates one wire quantity and its name.
func checkQuantity(name string, v float64) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: resource with empty name", ErrBadResources)
	case len(name) > maxResourceNameLen:
		return fmt.Errorf("%w: resource name of %d bytes, at most %d", ErrBadResources, len(name), maxResourceNameLen)
	case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
		return fmt.Errorf("%w: resource %q: quantity %v is not a finite non-negative number", ErrBadResources, name, v)
	case v > MaxResourceQuantity:
		return fmt.Errorf("%w: resource %q: quantity %v is more than %g", ErrBadResources, name, v, float64(MaxResourceQuantity))
	}
	return nil
}

// CheckAmounts validates wire quantities without converting them, for
// callers that only read them (a worker checking a pushed task's
// resources): it allocates nothing unless they are bad.
func CheckAmounts(r *protos.Resources) error {
	amounts := r.GetAmounts()
	if len(amounts) > maxResourceNames {
		return fmt.Errorf("%w: %d resources, at most %d", ErrBadResources, len(amounts), maxResourceNames)
	}
	for name, v := range amounts {
		if err := checkQuantity(name, v); err != nil {
			return err
		}
	}
	return nil
}

// addChecked adds d to s in place unless a sum would overflow, in which
// case s is left as it was.
func (s ResourceSet) addChecked(d ResourceSet) error {
	for k, v := range d {
		if v > 0 && s[k] > math.MaxInt64-v {
			return fmt.Errorf("%w: resource %q adds up to more than can be held", ErrBadResources, k)
		}
	}
	s.Add(d)
	return nil
}

// FromMap converts user quantities (see FromProto).
func FromMap(m map[string]float64) (ResourceSet, error) {
	return FromProto(&protos.Resources{Amounts: m})
}

// Proto converts to wire form.
func (s ResourceSet) Proto() *protos.Resources {
	m := make(map[string]float64, len(s))
	for k, v := range s {
		m[k] = float64(v) / resourceUnit
	}
	return &protos.Resources{Amounts: m}
}

// Get returns a quantity in natural units.
func (s ResourceSet) Get(name string) float64 { return float64(s[name]) / resourceUnit }

// Fits reports whether demand fits in s.
func (s ResourceSet) Fits(demand ResourceSet) bool {
	for k, v := range demand {
		if s[k] < v {
			return false
		}
	}
	return true
}

// Missing names the first resource of demand that s lacks, for messages.
func (s ResourceSet) Missing(demand ResourceSet) string {
	for _, k := range demand.names() {
		if s[k] < demand[k] {
			return fmt.Sprintf("%s: need %g, have %g", k, demand.Get(k), s.Get(k))
		}
	}
	return ""
}

// Sub subtracts in place; quantities may go negative (oversubscription
// after a blocked worker resumes, as Ray allows).
func (s ResourceSet) Sub(d ResourceSet) {
	for k, v := range d {
		s[k] -= v
	}
}

// Free is s with what is oversubscribed (negative) as zero: what a
// report says is available. Peers and the GCS refuse negative quantities.
func (s ResourceSet) Free() ResourceSet {
	for _, v := range s {
		if v < 0 {
			c := s.Clone()
			for k, v := range c {
				if v < 0 {
					c[k] = 0
				}
			}
			return c
		}
	}
	return s
}

// Add adds in place.
func (s ResourceSet) Add(d ResourceSet) {
	for k, v := range d {
		s[k] += v
	}
}

// Clone copies s.
func (s ResourceSet) Clone() ResourceSet {
	c := make(ResourceSet, len(s))
	for k, v := range s {
		c[k] = v
	}
	return c
}

// Only returns the part of s named name.
func (s ResourceSet) Only(name string) ResourceSet {
	if v, ok := s[name]; ok {
		return ResourceSet{name: v}
	}
	return ResourceSet{}
}

func (s ResourceSet) names() []string {
	names := make([]string, 0, len(s))
	for k := range s {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Key is a canonical string for the set, used to group equal shapes.
func (s ResourceSet) Key() string {
	var b strings.Builder
	for i, k := range s.names() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", k, s[k])
	}
	return b.String()
}

// String renders the set in natural units, e.g. "{CPU: 1, GPU: 0.5}".
func (s ResourceSet) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range s.names() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %g", k, s.Get(k))
	}
	b.WriteByte('}')
	return b.String()
}
