package raylet

import "testing"

func TestPickOOMVictim(t *testing.T) {
	task := func(owner string, granted uint64, retriable bool) oomCandidate {
		return oomCandidate{Owner: owner, Granted: granted, Retriable: retriable}
	}
	actor := func(granted uint64, detached bool) oomCandidate {
		return oomCandidate{Owner: "gcs", Granted: granted, Actor: true, Detached: detached}
	}
	cases := []struct {
		name  string
		cands []oomCandidate
		want  int
		retry bool
		none  bool
	}{
		{name: "nothing to kill", none: true},
		{name: "a lone task fails rather than loops",
			cands: []oomCandidate{task("driver", 1, true)}, want: 0, retry: false},
		{name: "newest task of the owner, retried since the owner keeps one",
			cands: []oomCandidate{task("driver", 1, true), task("driver", 3, true), task("driver", 2, true)}, want: 1, retry: true},
		{name: "retriable before non-retriable, even newer ones",
			cands: []oomCandidate{task("a", 1, true), task("b", 9, false), task("b", 8, false)}, want: 0, retry: false},
		{name: "non-retriable tasks of every owner form one group, newest first, never retried",
			cands: []oomCandidate{task("a", 1, false), task("b", 5, false), task("c", 3, false)}, want: 1, retry: false},
		{name: "the owner with most tasks running first",
			cands: []oomCandidate{task("a", 1, true), task("a", 2, true), task("b", 7, true), task("a", 3, true), task("b", 8, true)}, want: 3, retry: true},
		{name: "equal groups: the one whose oldest lease is newest",
			cands: []oomCandidate{task("a", 1, true), task("a", 6, true), task("b", 4, true), task("b", 5, true)}, want: 3, retry: true},
		{name: "tasks before actors, even a newer actor",
			cands: []oomCandidate{actor(9, false), task("a", 1, false)}, want: 1, retry: false},
		{name: "actors only when no task is left, newest first",
			cands: []oomCandidate{actor(1, false), actor(4, false), actor(2, false)}, want: 1, retry: true},
		{name: "a detached actor after the others, even older ones",
			cands: []oomCandidate{actor(1, false), actor(9, true), actor(2, false)}, want: 2, retry: true},
		{name: "detached actors last, newest first",
			cands: []oomCandidate{actor(3, true), actor(7, true)}, want: 1, retry: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pickOOMVictim(tc.cands)
			if tc.none {
				if ok {
					t.Fatalf("picked %+v from nothing", got)
				}
				return
			}
			if !ok || got.Index != tc.want || got.Retry != tc.retry {
				t.Fatalf("pickOOMVictim = %+v (ok %v), want index %d retry %v", got, ok, tc.want, tc.retry)
			}
		})
	}
}

func TestFractions(t *testing.T) {
	for _, tc := range []struct {
		used, threshold float64
		a, b            string
	}{
		{0.9712, 0.95, "0.97", "0.95"},
		{0.1146, 0.1145, "0.1146", "0.1145"},
		{0.5, 0.5, "0.500000", "0.500000"},
	} {
		if a, b := fractions(tc.used, tc.threshold); a != tc.a || b != tc.b {
			t.Errorf("fractions(%v, %v) = %s, %s; want %s, %s", tc.used, tc.threshold, a, b, tc.a, tc.b)
		}
	}
}
