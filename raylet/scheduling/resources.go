package scheduling

import (
	"fmt"
	"sort"
	"strings"
)

// Unit is the fixed-point scale of quantities. It matches raylet's
// resourceUnit (10000): a value of Unit means one whole CPU, GPU, etc. It is
// copied rather than imported because package raylet imports scheduling.
const Unit = 10000

// Resources maps a resource name to a fixed-point amount (see Unit). It
// mirrors raylet.ResourceSet so that conversion is a plain type conversion.
type Resources map[string]int64

// Fits reports whether r (a demand) fits in avail.
func (r Resources) Fits(avail Resources) bool {
	for k, v := range r {
		if avail[k] < v {
			return false
		}
	}
	return true
}

// Sub subtracts d from r in place.
func (r Resources) Sub(d Resources) {
	for k, v := range d {
		r[k] -= v
	}
}

// Add adds d to r in place.
func (r Resources) Add(d Resources) {
	for k, v := range d {
		r[k] += v
	}
}

// Clone copies r; the clone of nil is an empty, non-nil map.
func (r Resources) Clone() Resources {
	c := make(Resources, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// Utilisation is the critical-resource utilisation of a node with the given
// total and avail after demand is placed: the maximum over resources with a
// positive total of used/total, as Ray's hybrid policy scores nodes. It is 0
// for a node with no resources.
func Utilisation(total, avail, demand Resources) float64 {
	u := 0.0
	for k, t := range total {
		if t <= 0 {
			continue
		}
		used := float64(t-(avail[k]-demand[k])) / float64(t)
		u = max(u, used)
	}
	return u
}

// validate rejects negative amounts and empty names.
func (r Resources) validate() error {
	for _, k := range r.names() {
		if k == "" {
			return fmt.Errorf("resource with empty name")
		}
		if r[k] < 0 {
			return fmt.Errorf("resource %q: negative amount %g", k, float64(r[k])/Unit)
		}
	}
	return nil
}

func (r Resources) names() []string {
	names := make([]string, 0, len(r))
	for k := range r {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// String renders r in natural units, e.g. "{CPU: 1, GPU: 0.5}".
func (r Resources) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range r.names() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %g", k, float64(r[k])/Unit)
	}
	b.WriteByte('}')
	return b.String()
}
