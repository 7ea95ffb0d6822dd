package producer

import "sync"

// slots counts the requests being served, in all and by key name, against
// MaxInFlight and MaxInFlightPerKey.
type slots struct {
	total, perKey int
	mu            sync.Mutex
	inUse         int
	byKey         map[string]int
}

// slotOutcome is what take says.
type slotOutcome int

const (
	slotTaken     slotOutcome = iota // the caller holds a slot, to release
	allSlotsTaken                    // MaxInFlight requests are being served
	keySlotsTaken                    // the key's MaxInFlightPerKey requests are
)

func newSlots(total, perKey int) *slots {
	return &slots{total: total, perKey: perKey, byKey: map[string]int{}}
}

// take asks for a slot for a request of key.
func (s *slots) take(key string) slotOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.inUse >= s.total:
		return allSlotsTaken
	case s.byKey[key] >= s.perKey:
		return keySlotsTaken
	}
	s.inUse++
	s.byKey[key]++
	return slotTaken
}

// release gives back a slot that take gave for key.
func (s *slots) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse--
	if s.byKey[key]--; s.byKey[key] == 0 {
		delete(s.byKey, key) // a revoked key's name leaves nothing behind
	}
}
