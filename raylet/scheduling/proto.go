package scheduling

import (
	"fmt"
	"math"

	"github.com/goray/goray/protos"
)

// Conversions from the wire types, shared by the raylet and the GCS.

// FromAmounts converts quantities in natural units (1.5 CPUs) to fixed
// point, rejecting negative, NaN or infinite ones and empty names.
func FromAmounts(m map[string]float64) (Resources, error) {
	out := make(Resources, len(m))
	for k, v := range m {
		switch {
		case k == "":
			return nil, fmt.Errorf("%w: resource with an empty name", ErrInvalidDemand)
		case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
			return nil, fmt.Errorf("%w: resource %q: invalid quantity %v", ErrInvalidDemand, k, v)
		}
		if q := int64(math.Round(v * Unit)); q > 0 {
			out[k] = q
		}
	}
	return out, nil
}

// StrategyFromProto converts a wire strategy; spreadIndex is the caller's
// SPREAD cursor. PLACEMENT_GROUP is Default here: the demand names the
// group's bundle resources, which only the group's nodes have.
func StrategyFromProto(p *protos.SchedulingStrategy, spreadIndex int) (Strategy, error) {
	var st Strategy
	switch p.GetKind() {
	case protos.SchedulingStrategy_DEFAULT, protos.SchedulingStrategy_PLACEMENT_GROUP:
	case protos.SchedulingStrategy_SPREAD:
		st.Kind, st.SpreadIndex = Spread, spreadIndex
	case protos.SchedulingStrategy_NODE_AFFINITY:
		id, err := protos.UniqueIDFromBytes(p.GetNodeId())
		if err != nil {
			return st, fmt.Errorf("%w: node affinity: node id: %v", ErrInvalidDemand, err)
		}
		st.Kind, st.Affinity = NodeAffinity, Affinity{NodeID: id.String(), Soft: p.GetSoft()}
	default:
		return st, fmt.Errorf("%w: scheduling strategy %v is not a node policy", ErrInvalidDemand, p.GetKind())
	}
	if ls := p.GetLabels(); len(ls) > 0 {
		st.Labels = LabelSelector{}
		for k, v := range ls {
			if k == "" || len(v.GetValues()) == 0 {
				return st, fmt.Errorf("%w: label selector %q: want a label name and at least one value", ErrInvalidDemand, k)
			}
			st.Labels[k] = v.GetValues()
		}
	}
	return st, nil
}

// BundlesFromAmounts converts placement group bundles, rejecting an empty
// list, empty bundles and amounts that are not positive (a zero amount is
// a mistake, not a no-op) with errors wrapping ErrInvalidBundle.
func BundlesFromAmounts(bundles []map[string]float64) ([]Resources, error) {
	if len(bundles) == 0 {
		return nil, fmt.Errorf("%w: a placement group needs at least one bundle", ErrInvalidBundle)
	}
	out := make([]Resources, len(bundles))
	for i, b := range bundles {
		if len(b) == 0 {
			return nil, fmt.Errorf("%w: bundle %d is empty", ErrInvalidBundle, i)
		}
		r := make(Resources, len(b))
		for k, v := range b {
			switch {
			case k == "":
				return nil, fmt.Errorf("%w: bundle %d: resource with an empty name", ErrInvalidBundle, i)
			case math.IsNaN(v) || math.IsInf(v, 0) || v <= 0:
				return nil, fmt.Errorf("%w: bundle %d: resource %q: amount %v must be a positive number", ErrInvalidBundle, i, k, v)
			}
			q := int64(math.Round(v * Unit))
			if q == 0 {
				return nil, fmt.Errorf("%w: bundle %d: resource %q: amount %v is below the resolution %v", ErrInvalidBundle, i, k, v, 1.0/Unit)
			}
			r[k] = q
		}
		out[i] = r
	}
	return out, nil
}

// PGStrategyFromProto converts a placement group strategy.
func PGStrategyFromProto(s protos.PlacementStrategy) (PGStrategy, error) {
	switch s {
	case protos.PlacementStrategy_PACK:
		return PGPack, nil
	case protos.PlacementStrategy_SPREAD:
		return PGSpread, nil
	case protos.PlacementStrategy_STRICT_PACK:
		return PGStrictPack, nil
	case protos.PlacementStrategy_STRICT_SPREAD:
		return PGStrictSpread, nil
	}
	return 0, fmt.Errorf("%w: unknown placement strategy %v", ErrInvalidBundle, s)
}
