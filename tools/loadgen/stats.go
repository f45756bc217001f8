package main

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The first 16 bytes of every payload: send time (unix ns), publisher id,
// sequence (per publisher, from 1). The rest is padding to --size.
const header = 16

func stamp(b []byte, pub uint32, seq uint32) {
	binary.BigEndian.PutUint64(b[0:8], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint32(b[8:12], pub)
	binary.BigEndian.PutUint32(b[12:16], seq)
}

func unstamp(b []byte) (sent time.Time, pub, seq uint32, ok bool) {
	if len(b) < header {
		return time.Time{}, 0, 0, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[0:8]))), binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint32(b[12:16]), true
}

// receiver counts what one subscriber received: per publisher a bitmap of
// sequences (duplicates are exact), and latencies.
type receiver struct {
	mu       sync.Mutex
	seen     map[uint32][]uint64 // publisher -> bitmap of seqs
	received uint64
	dups     uint64
	hist     *hdrhistogram.Histogram
}

func newReceiver() *receiver {
	return &receiver{seen: map[uint32][]uint64{}, hist: hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)}
}

func (r *receiver) record(payload []byte) {
	sent, pub, seq, ok := unstamp(payload)
	if !ok {
		return
	}
	lat := time.Since(sent)
	r.mu.Lock()
	defer r.mu.Unlock()
	bm := r.seen[pub]
	word := int(seq / 64)
	for len(bm) <= word {
		bm = append(bm, 0)
	}
	bit := uint64(1) << (seq % 64)
	if bm[word]&bit != 0 {
		r.dups++
		r.seen[pub] = bm
		return
	}
	bm[word] |= bit
	r.seen[pub] = bm
	r.received++
	_ = r.hist.RecordValue(max(int64(lat/time.Microsecond), 1))
}

// procSample is a reading of a server process from /proc.
type procSample struct {
	RSSBytes int64
	CPUTicks int64
}

func readProc(pid int) (procSample, bool) {
	if pid <= 0 {
		return procSample{}, false
	}
	var s procSample
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			s.RSSBytes = kb << 10
		}
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err == nil {
		// Fields after the command (which may hold spaces) start after ')'.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			f := strings.Fields(string(stat)[i+1:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				sy, _ := strconv.ParseInt(f[12], 10, 64)
				s.CPUTicks = u + sy
			}
		}
	}
	return s, true
}

// procWatch samples the server processes every interval and keeps the
// peak RSS and the CPU used between start and stop.
type procWatch struct {
	pids    []int
	start   map[int]procSample
	peakRSS map[int]int64
	stop    chan struct{}
	done    chan struct{}
	began   time.Time
}

func watchProcs(pids []int) *procWatch {
	w := &procWatch{pids: pids, start: map[int]procSample{}, peakRSS: map[int]int64{},
		stop: make(chan struct{}), done: make(chan struct{}), began: time.Now()}
	for _, p := range pids {
		if s, ok := readProc(p); ok {
			w.start[p] = s
			w.peakRSS[p] = s.RSSBytes
		}
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				for _, p := range w.pids {
					if s, ok := readProc(p); ok && s.RSSBytes > w.peakRSS[p] {
						w.peakRSS[p] = s.RSSBytes
					}
				}
			}
		}
	}()
	return w
}

// ServerUsage is what the server processes used during the run.
type ServerUsage struct {
	PID          int     `json:"pid"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	CPUPercent   float64 `json:"cpu_percent"` // of one core, averaged over the run
}

func (w *procWatch) finish() []ServerUsage {
	close(w.stop)
	<-w.done
	elapsed := time.Since(w.began).Seconds()
	var out []ServerUsage
	for _, p := range w.pids {
		end, ok := readProc(p)
		if !ok {
			continue
		}
		ticks := float64(end.CPUTicks - w.start[p].CPUTicks)
		out = append(out, ServerUsage{PID: p, PeakRSSBytes: max(w.peakRSS[p], end.RSSBytes),
			CPUPercent: 100 * ticks / 100 / elapsed}) // USER_HZ is 100 on Linux
	}
	return out
}
