package ecssim

import "testing"

// Every action this ECS answers draws from a bucket: none is unthrottled.
func TestEveryActionHasABucket(t *testing.T) {
	limits := DefaultLimits()
	for action := range actions {
		if b, ok := limits[action]; !ok || b.Size <= 0 || b.Refill <= 0 {
			t.Errorf("%s: bucket %+v", action, b)
		}
	}
	for action := range limits {
		if _, ok := actions[action]; !ok {
			t.Errorf("bucket for %s, an action this ECS does not answer", action)
		}
	}
}
