package objstore

// lruList orders the sealed objects held in memory from least to most
// recently used (Seal or Acquire), which is the order the spiller picks
// victims in. It is intrusive, through the objects' prev and next fields,
// so moving an object to the back on every Acquire allocates nothing. The
// Store's mutex guards it.
type lruList struct {
	front, back *object
	n           int
}

func (l *lruList) pushBack(o *object) {
	o.prev, o.next = l.back, nil
	if l.back != nil {
		l.back.next = o
	} else {
		l.front = o
	}
	l.back = o
	o.inLRU = true
	l.n++
}

func (l *lruList) remove(o *object) {
	if !o.inLRU {
		return
	}
	if o.prev != nil {
		o.prev.next = o.next
	} else {
		l.front = o.next
	}
	if o.next != nil {
		o.next.prev = o.prev
	} else {
		l.back = o.prev
	}
	o.prev, o.next, o.inLRU = nil, nil, false
	l.n--
}

// touch marks o as just used.
func (l *lruList) touch(o *object) {
	if l.back == o {
		return
	}
	l.remove(o)
	l.pushBack(o)
}
