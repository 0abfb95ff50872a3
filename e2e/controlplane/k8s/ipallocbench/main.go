// Command ipallocbench measures Kubernetes' bitmap ClusterIP allocator
// (k8s.io/kubernetes/pkg/registry/core/service/ipallocator, NewInMemory) on the same
// workloads as Signpost's `allocbench` (bench/src/bin/allocbench.rs), so that
// `just bench-allocator` can put the two side by side. It prints one JSON line per
// measurement on stdout; bench/scripts/allocator.sh turns them into a Markdown table.
//
// The harness is identical on both sides: the same CIDRs, the same fill levels, and the
// same SplitMix64 sequence choosing which held address to release in the churn workload.
// (The Kubernetes allocator itself picks its random scan start from a time-seeded
// math/rand source we cannot set; that is part of what is measured.)
//
// Each timed fill and churn workload runs -reps times (default 3) from an empty allocator
// and the fastest repetition is reported (the machine is shared; the minimum is the least
// noisy estimate); all repetitions are in all_total_ms.
//
// Usage: ipallocbench [-pairs N] [-seed S] [-reps R] [-only fill|churn|ipv6]
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"runtime"
	"time"

	api "k8s.io/kubernetes/pkg/apis/core"
	"k8s.io/kubernetes/pkg/registry/core/service/ipallocator"
)

const side = "kubernetes"

// splitMix64 is the PRNG both benchmark programs use, so the churn workload releases the
// same sequence of held slots on both sides.
type splitMix64 struct{ state uint64 }

func (r *splitMix64) next() uint64 {
	r.state += 0x9E3779B97F4A7C15
	z := r.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func emit(m map[string]any) {
	m["side"] = side
	b, err := json.Marshal(m)
	if err != nil {
		fatal(err)
	}
	fmt.Println(string(b))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ipallocbench:", err)
	os.Exit(1)
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		fatal(err)
	}
	return n
}

func newRange(cidr string) *ipallocator.Range {
	r, err := ipallocator.NewInMemory(mustCIDR(cidr))
	if err != nil {
		fatal(err)
	}
	return r
}

// heapAlloc is the live heap after two full collections.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// snapshotBytes is the size of the bitmap as the allocator persists it (big.Int bytes).
func snapshotBytes(r *ipallocator.Range) int {
	var snap api.RangeAllocation
	if err := r.Snapshot(&snap); err != nil {
		fatal(err)
	}
	return len(snap.Data)
}

func memory(state, cidr string, r *ipallocator.Range, before uint64) {
	after := heapAlloc()
	runtime.KeepAlive(r)
	emit(map[string]any{
		"workload":     "memory",
		"state":        state,
		"cidr":         cidr,
		"used":         r.Used(),
		"bitmap_bytes": snapshotBytes(r),
		"heap_bytes":   int64(after) - int64(before),
		"heap_method":  "runtime.MemStats.HeapAlloc delta after GC (allocator only; harness data dropped first)",
	})
}

// best returns the fastest of times, and all of them in milliseconds.
func best(times []time.Duration) (time.Duration, []float64) {
	fastest := times[0]
	ms := make([]float64, 0, len(times))
	for _, t := range times {
		if t < fastest {
			fastest = t
		}
		ms = append(ms, float64(t.Nanoseconds())/1e6)
	}
	return fastest, ms
}

// fill runs allocate-next until the range is full, reps times from empty; the fastest
// counts.
func fill(cidr string, reps int) {
	var times []time.Duration
	var r *ipallocator.Range
	var before uint64
	count := 0
	for rep := 0; rep < reps; rep++ {
		r = nil
		before = heapAlloc()
		r = newRange(cidr)
		count = 0
		start := time.Now()
		for {
			if _, err := r.AllocateNext(); err != nil {
				if errors.Is(err, ipallocator.ErrFull) {
					break
				}
				fatal(err)
			}
			count++
		}
		times = append(times, time.Since(start))
	}
	elapsed, all := best(times)
	emit(map[string]any{
		"workload":     "fill",
		"cidr":         cidr,
		"count":        count,
		"reps":         reps,
		"total_ms":     float64(elapsed.Nanoseconds()) / 1e6,
		"ns_per_op":    float64(elapsed.Nanoseconds()) / float64(count),
		"all_total_ms": all,
	})
	memory("full", cidr, r, before)
}

// churn fills the range to pct % with allocate-next, then times pairs of (release a
// random held address, allocate-next); reps times from empty, the fastest counts.
func churn(cidr string, pct int, pairs int, seed uint64, reps int) {
	var times []time.Duration
	var r *ipallocator.Range
	var before uint64
	for rep := 0; rep < reps; rep++ {
		r = nil
		before = heapAlloc()
		r = newRange(cidr)
		capacity := r.Free()
		target := capacity * pct / 100
		held := make([]net.IP, 0, target)
		for len(held) < target {
			ip, err := r.AllocateNext()
			if err != nil {
				fatal(err)
			}
			held = append(held, ip)
		}
		rng := splitMix64{seed}
		runtime.GC()
		start := time.Now()
		for i := 0; i < pairs; i++ {
			j := rng.next() % uint64(len(held))
			if err := r.Release(held[j]); err != nil {
				fatal(err)
			}
			ip, err := r.AllocateNext()
			if err != nil {
				fatal(err)
			}
			held[j] = ip
		}
		times = append(times, time.Since(start))
	}
	elapsed, all := best(times)
	emit(map[string]any{
		"workload":     "churn",
		"cidr":         cidr,
		"fill_pct":     pct,
		"used":         r.Used(),
		"pairs":        pairs,
		"reps":         reps,
		"total_ms":     float64(elapsed.Nanoseconds()) / 1e6,
		"ns_per_pair":  float64(elapsed.Nanoseconds()) / float64(pairs),
		"all_total_ms": all,
	})
	// The harness's address list went out of scope with the last repetition.
	memory(fmt.Sprintf("%d%% full after churn", pct), cidr, r, before)
}

// ipv6 tries the sparse IPv6 workload: 100,000 allocate-next then 1,000 requests at random
// offsets of a /64. NewInMemory caps an IPv6 range at 65,536 addresses (first one
// reserved), so it hands out 65,535 and refuses the rest; we record exactly what happens.
func ipv6(sequential, random int, seed uint64) {
	const cidr = "fd00:10:96::/64"
	before := heapAlloc()
	r := newRange(cidr)
	capacity := r.Free()
	handed := 0
	var firstErr error
	start := time.Now()
	for i := 0; i < sequential; i++ {
		if _, err := r.AllocateNext(); err != nil {
			firstErr = err
			break
		}
		handed++
	}
	elapsed := time.Since(start)
	network := mustCIDR(cidr).IP.To16()
	rng := splitMix64{seed}
	granted, notInRange, taken := 0, 0, 0
	for i := 0; i < random; i++ {
		ip := make(net.IP, net.IPv6len)
		copy(ip, network)
		off := rng.next()
		if off == 0 {
			off = 1
		}
		binary.BigEndian.PutUint64(ip[8:], off)
		err := r.Allocate(ip)
		var nir *ipallocator.ErrNotInRange
		switch {
		case err == nil:
			granted++
		case errors.As(err, &nir):
			notInRange++
		case errors.Is(err, ipallocator.ErrAllocated):
			taken++
		default:
			fatal(err)
		}
	}
	firstErrText := ""
	if firstErr != nil {
		firstErrText = firstErr.Error()
	}
	limit := new(big.Int).Lsh(big.NewInt(1), 64)
	emit(map[string]any{
		"workload":               "ipv6",
		"cidr":                   cidr,
		"cidr_addresses":         limit.String(),
		"capacity":               capacity,
		"sequential_requested":   sequential,
		"sequential_handed":      handed,
		"sequential_error":       firstErrText,
		"ns_per_op":              float64(elapsed.Nanoseconds()) / float64(max(handed, 1)),
		"random_requested":       random,
		"random_granted":         granted,
		"random_not_in_range":    notInRange,
		"random_already_taken":   taken,
		"source_cap_description": "bitmap.go New(): IPv6 `if max > 65536 { max = 65536 }`, then max-- for the network address",
	})
	memory("ipv6 /64 after the sparse workload", cidr, r, before)
}

func main() {
	pairs := flag.Int("pairs", 200000, "release+allocate pairs per churn workload")
	seed := flag.Uint64("seed", 0x5167_9057, "SplitMix64 seed for the churn and IPv6 workloads")
	reps := flag.Int("reps", 3, "repetitions of each timed fill/churn workload; the fastest is reported")
	only := flag.String("only", "", "run one workload group: fill, churn or ipv6")
	flag.Parse()

	emit(map[string]any{
		"workload":   "info",
		"allocator":  "k8s.io/kubernetes/pkg/registry/core/service/ipallocator NewInMemory (bitmap)",
		"go":         runtime.Version(),
		"gomaxprocs": runtime.GOMAXPROCS(0),
	})
	if *only == "" || *only == "fill" {
		fill("10.96.0.0/16", max(*reps, 1))
		fill("10.96.0.0/12", max(*reps, 1))
	}
	if *only == "" || *only == "churn" {
		for _, cidr := range []string{"10.96.0.0/16", "10.96.0.0/12"} {
			for _, pct := range []int{50, 99} {
				churn(cidr, pct, *pairs, *seed, max(*reps, 1))
			}
		}
	}
	if *only == "" || *only == "ipv6" {
		ipv6(100000, 1000, *seed)
	}
}
