package raylet

import (
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

// FromProto converts wire quantities, rejecting negative or non-finite ones.
func FromProto(r *protos.Resources) (ResourceSet, error) {
	out := ResourceSet{}
	if r == nil {
		return out, nil
	}
	for name, v := range r.GetAmounts() {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("resource %q: invalid quantity %v", name, v)
		}
		if name == "" {
			return nil, fmt.Errorf("resource with empty name")
		}
		if q := int64(math.Round(v * resourceUnit)); q > 0 {
			out[name] = q
		}
	}
	return out, nil
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
