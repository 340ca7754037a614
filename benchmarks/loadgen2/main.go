// loadgen2: the scenarios of the wshub benchmark suite that the shared yardstick's loadgen
// does not cover. It speaks the same JSON subset of the Centrifugo client protocol v2
// (connect, subscribe, unsubscribe, publish, publication pushes, {} ping/pong) and prints
// one JSON object per result line on stdout (progress and problems go to stderr).
//
//	-mode fanout    N subscribers spread over K channels; publishers publish round-robin
//	                over the channels; -rates is a list of offered deliveries/s, one step
//	                each (a sweep over one set of connections); per step: latency
//	                percentiles, delivered, expected, lost.
//	-mode recovery  one subscriber leaves a channel, -n publications go out, it comes back
//	                with recover=true: time from the resubscribe to all -n received.
//	-mode churn     connect (upgrade + connect command), close, repeat, -dialc at a time,
//	                for -d: connects per second (optionally with an Origin header).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

var (
	url      = flag.String("url", "ws://127.0.0.1:8000/connection/websocket", "endpoint")
	token    = flag.String("token", "", "connect command token")
	mode     = flag.String("mode", "fanout", "fanout | recovery | churn")
	conns    = flag.Int("conns", 10000, "subscribers (fanout)")
	channels = flag.Int("channels", 100, "channels the subscribers are spread over (fanout)")
	prefix   = flag.String("prefix", "lg2", "channel name prefix")
	rates    = flag.String("rates", "20000", "offered deliveries per second, comma-separated steps (fanout)")
	dur      = flag.Duration("d", 5*time.Second, "duration of a step (fanout) or of the run (churn)")
	payload  = flag.Int("size", 64, "payload bytes")
	dialConc = flag.Int("dialc", 64, "concurrent dials")
	pubs     = flag.Int("pubs", 4, "publisher connections (fanout)")
	origin   = flag.String("origin", "", "Origin header on the upgrade")
	nPubs    = flag.Int("n", 1000, "publications missed per iteration (recovery)")
	iters    = flag.Int("iters", 20, "iterations (recovery)")
	stopP99  = flag.Duration("stop-p99", 2*time.Second, "end a sweep after a step with a p99 over this (fanout)")
	drainMax = flag.Duration("drain", 10*time.Second, "longest wait for a step's last deliveries (fanout)")
	srvPid   = flag.Int("server-pid", 0, "report this process's CPU use per step too (fanout)")
)

// cpuSecs is the CPU time (user + system) of this process, or of pid if pid > 0.
func cpuSecs(pid int) float64 {
	if pid <= 0 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
	ut, _ := strconv.ParseFloat(f[11], 64)                   // 14: utime
	st, _ := strconv.ParseFloat(f[12], 64)                   // 15: stime
	return (ut + st) / 100                                   // USER_HZ
}

func nowUs() int64 { return time.Now().UnixNano() / 1000 }

func emit(v map[string]interface{}) {
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

func fatal(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "loadgen2: "+format+"\n", a...)
	os.Exit(1)
}

// -- connections ---------------------------------------------------------------------------

type conn struct {
	c  *websocket.Conn
	mu sync.Mutex // gorilla allows one concurrent writer
}

func (c *conn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c.WriteMessage(websocket.TextMessage, b)
}

type reply struct {
	ID        int64           `json:"id"`
	Error     json.RawMessage `json:"error"`
	Subscribe *struct {
		Epoch        string            `json:"epoch"`
		Offset       uint64            `json:"offset"`
		Recovered    bool              `json:"recovered"`
		Publications []json.RawMessage `json:"publications"`
	} `json:"subscribe"`
}

// lines splits a frame into its newline-separated messages.
func lines(b []byte) [][]byte {
	if bytes.IndexByte(b, '\n') < 0 {
		return [][]byte{b}
	}
	var out [][]byte
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// request sends frame and returns the reply with id (answering pings, skipping pushes).
func (c *conn) request(id int64, frame string) (*reply, error) {
	if err := c.write([]byte(frame)); err != nil {
		return nil, err
	}
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.c.SetReadDeadline(time.Time{})
	for {
		_, b, err := c.c.ReadMessage()
		if err != nil {
			return nil, err
		}
		for _, l := range lines(b) {
			if string(l) == "{}" {
				c.write(l)
				continue
			}
			var r reply
			if json.Unmarshal(l, &r) != nil || r.ID != id {
				continue
			}
			if len(r.Error) > 0 && string(r.Error) != "null" {
				return &r, fmt.Errorf("error reply: %s", r.Error)
			}
			return &r, nil
		}
	}
}

func dial() (*conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 8192, WriteBufferSize: 8192}
	var h http.Header
	if *origin != "" {
		h = http.Header{"Origin": {*origin}}
	}
	c, resp, err := d.Dial(*url, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%v (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	cc := &conn{c: c}
	if _, err := cc.request(1, fmt.Sprintf(`{"id":1,"connect":{"token":%q,"name":"loadgen2"}}`, *token)); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect command: %v", err)
	}
	return cc, nil
}

// dialMany opens n connections, -dialc at a time, and runs after(i, c) on each (in the
// dialling goroutine); it returns the connections that made it, in index order.
func dialMany(n int, after func(i int, c *conn) error) []*conn {
	out := make([]*conn, n)
	sem := make(chan struct{}, *dialConc)
	var wg sync.WaitGroup
	var failed int64
	var firstErr atomic.Value
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial()
			if err == nil && after != nil {
				if err = after(i, c); err != nil {
					c.c.Close()
				}
			}
			if err != nil {
				atomic.AddInt64(&failed, 1)
				firstErr.Store(err.Error())
				return
			}
			out[i] = c
		}(i)
	}
	wg.Wait()
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "loadgen2: %d connections failed (%v)\n", failed, firstErr.Load())
	}
	return out
}

// -- statistics ----------------------------------------------------------------------------

func pct(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return -1
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}

func summary(lat []int64, into map[string]interface{}) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	into["p50_us"] = pct(lat, 0.5)
	into["p90_us"] = pct(lat, 0.9)
	into["p99_us"] = pct(lat, 0.99)
	into["max_us"] = pct(lat, 1.0)
}

// -- fanout --------------------------------------------------------------------------------

type step struct {
	mu       sync.Mutex
	lat      []int64
	got      int64 // atomic
	last     int64 // atomic: arrival time (us) of the latest delivery
	expected int64
}

// stampField reads the integer after `"<name>":` in b (our own publication data).
func stampField(b []byte, name string) (int64, bool) {
	key := []byte(`"` + name + `":`)
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	i += len(key)
	j := i
	for j < len(b) && (b[j] == '-' || (b[j] >= '0' && b[j] <= '9')) {
		j++
	}
	v, err := strconv.ParseInt(string(b[i:j]), 10, 64)
	return v, err == nil
}

func fanout() {
	var steps []int
	for _, s := range strings.Split(*rates, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v <= 0 {
			fatal("bad -rates %q", *rates)
		}
		steps = append(steps, v)
	}
	if *channels < 1 || *conns < *channels {
		fatal("need 1 <= -channels <= -conns")
	}
	stats := make([]*step, len(steps))
	for i := range stats {
		stats[i] = &step{}
	}
	var dropped int64
	subsOn := make([]int64, *channels)

	t0 := time.Now()
	subs := dialMany(*conns, func(i int, c *conn) error {
		ch := fmt.Sprintf("%s%d", *prefix, i%*channels)
		_, err := c.request(2, fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, ch))
		return err
	})
	n := 0
	for i, c := range subs {
		if c != nil {
			subsOn[i%*channels]++
			n++
		}
	}
	emit(map[string]interface{}{"mode": "fanout", "event": "ready", "subscribers": n, "wanted": *conns,
		"channels": *channels, "secs": time.Since(t0).Seconds()})
	if n == 0 {
		fatal("no subscriber connected")
	}
	for _, c := range subs {
		if c == nil {
			continue
		}
		go func(c *conn) {
			for {
				_, b, err := c.c.ReadMessage()
				if err != nil {
					atomic.AddInt64(&dropped, 1)
					return
				}
				for _, l := range lines(b) {
					if string(l) == "{}" {
						c.write(l)
						continue
					}
					t, ok := stampField(l, "t")
					if !ok {
						continue
					}
					k, ok := stampField(l, "k")
					if !ok || k < 0 || int(k) >= len(stats) {
						continue
					}
					s := stats[k]
					now := nowUs()
					d := now - t
					atomic.StoreInt64(&s.last, now)
					s.mu.Lock()
					s.lat = append(s.lat, d)
					s.mu.Unlock()
					atomic.AddInt64(&s.got, 1)
				}
			}
		}(c)
	}

	var pubErrors int64
	var pubConns []*conn
	for i := 0; i < *pubs; i++ {
		p, err := dial()
		if err != nil {
			fatal("publisher: %v", err)
		}
		pubConns = append(pubConns, p)
		go func(p *conn) {
			for {
				_, b, err := p.c.ReadMessage()
				if err != nil {
					return
				}
				for _, l := range lines(b) {
					if string(l) == "{}" {
						p.write(l)
					} else if bytes.Contains(l, []byte(`"error"`)) {
						atomic.AddInt64(&pubErrors, 1)
					}
				}
			}
		}(p)
	}
	pad := strings.Repeat("x", *payload)
	var seq int64
	subsPerChan := float64(n) / float64(*channels)
	for k, drate := range steps {
		s := stats[k]
		pubRate := float64(drate) / subsPerChan // publications per second
		errs0 := atomic.LoadInt64(&pubErrors)
		start := time.Now()
		startUs := nowUs()
		selfCPU0, srvCPU0 := cpuSecs(0), cpuSecs(*srvPid)
		var sent int64
		for {
			el := time.Since(start)
			if el >= *dur {
				break
			}
			target := int64(pubRate * el.Seconds())
			for sent < target {
				seq++
				ch := int(seq % int64(*channels))
				p := pubConns[int(seq/int64(*channels))%len(pubConns)]
				f := fmt.Sprintf(`{"id":%d,"publish":{"channel":"%s%d","data":{"t":%d,"k":%d,"p":%q}}}`,
					seq+10, *prefix, ch, nowUs(), k, pad)
				if err := p.write([]byte(f)); err != nil {
					fatal("publish: %v", err)
				}
				s.expected += subsOn[ch]
				sent++
			}
			time.Sleep(500 * time.Microsecond)
		}
		elapsed := time.Since(start).Seconds()
		selfCPU, srvCPU := (cpuSecs(0)-selfCPU0)/elapsed, (cpuSecs(*srvPid)-srvCPU0)/elapsed
		// drain: until everything arrived, or no progress for 2 s, or -drain
		last, lastChange, dstart := int64(-1), time.Now(), time.Now()
		for {
			g := atomic.LoadInt64(&s.got)
			if g >= s.expected || time.Since(lastChange) > 2*time.Second || time.Since(dstart) > *drainMax {
				break
			}
			if g != last {
				last, lastChange = g, time.Now()
			}
			time.Sleep(20 * time.Millisecond)
		}
		got := atomic.LoadInt64(&s.got)
		// delivered/s over the time the deliveries took: past the publishing window when
		// the server falls behind
		span := float64(atomic.LoadInt64(&s.last)-startUs) / 1e6
		if span < elapsed {
			span = elapsed
		}
		s.mu.Lock()
		lat := append([]int64(nil), s.lat...)
		s.mu.Unlock()
		out := map[string]interface{}{"mode": "fanout", "event": "step", "step": k,
			"offered_deliveries_per_s": drate, "publications": sent,
			"publications_per_s": float64(sent) / elapsed, "expected": s.expected, "delivered": got,
			"lost": s.expected - got, "delivered_per_s": float64(got) / span,
			"subscribers": n, "channels": *channels, "dropped_connections": atomic.LoadInt64(&dropped),
			"publish_errors": atomic.LoadInt64(&pubErrors) - errs0, "load_cpu": selfCPU}
		if *srvPid > 0 {
			out["server_cpu"] = srvCPU
		}
		summary(lat, out)
		emit(out)
		p99, _ := out["p99_us"].(int64)
		if time.Duration(p99)*time.Microsecond > *stopP99 || (s.expected > 0 && float64(s.expected-got) > 0.01*float64(s.expected)) {
			emit(map[string]interface{}{"mode": "fanout", "event": "saturated", "step": k})
			break
		}
	}
	for _, c := range subs {
		if c != nil {
			c.c.Close()
		}
	}
	for _, p := range pubConns {
		p.c.Close()
	}
}

// -- recovery ------------------------------------------------------------------------------

func recovery() {
	sub, err := dial()
	if err != nil {
		fatal("subscriber: %v", err)
	}
	pub, err := dial()
	if err != nil {
		fatal("publisher: %v", err)
	}
	// the publisher's acks: count them so a window of publishes can be in flight
	acks := make(chan bool, 1<<16)
	go func() {
		for {
			_, b, err := pub.c.ReadMessage()
			if err != nil {
				close(acks)
				return
			}
			for _, l := range lines(b) {
				if string(l) == "{}" {
					pub.write(l)
					continue
				}
				acks <- !bytes.Contains(l, []byte(`"error"`))
			}
		}
	}()
	ch := *prefix + "rec"
	pad := strings.Repeat("x", *payload)
	var id int64 = 10
	var times []int64
	var incomplete, notRecovered, pubErrs int
	for it := 0; it < *iters; it++ {
		id++
		r, err := sub.request(id, fmt.Sprintf(`{"id":%d,"subscribe":{"channel":%q,"recoverable":true}}`, id, ch))
		if err != nil || r.Subscribe == nil {
			fatal("subscribe: %v", err)
		}
		epoch, offset := r.Subscribe.Epoch, r.Subscribe.Offset
		id++
		if _, err := sub.request(id, fmt.Sprintf(`{"id":%d,"unsubscribe":{"channel":%q}}`, id, ch)); err != nil {
			fatal("unsubscribe: %v", err)
		}
		// publish n while the subscriber is away, at most 256 unacknowledged
		inflight := 0
		for i := 0; i < *nPubs; i++ {
			for inflight >= 256 {
				if ok, open := <-acks; !open {
					fatal("publisher closed")
				} else if !ok {
					pubErrs++
				}
				inflight--
			}
			id++
			f := fmt.Sprintf(`{"id":%d,"publish":{"channel":%q,"data":{"i":%d,"p":%q}}}`, id, ch, i, pad)
			if err := pub.write([]byte(f)); err != nil {
				fatal("publish: %v", err)
			}
			inflight++
		}
		for ; inflight > 0; inflight-- {
			if ok, open := <-acks; !open {
				fatal("publisher closed")
			} else if !ok {
				pubErrs++
			}
		}
		id++
		t0 := time.Now()
		r, err = sub.request(id, fmt.Sprintf(`{"id":%d,"subscribe":{"channel":%q,"recover":true,"epoch":%q,"offset":%d}}`,
			id, ch, epoch, offset))
		if err != nil || r.Subscribe == nil {
			fatal("resubscribe: %v", err)
		}
		got := len(r.Subscribe.Publications)
		// anything not in the reply would come as pushes: wait for the rest (up to 10 s)
		deadline := time.Now().Add(10 * time.Second)
		for got < *nPubs && time.Now().Before(deadline) {
			sub.c.SetReadDeadline(deadline)
			_, b, err := sub.c.ReadMessage()
			if err != nil {
				break
			}
			for _, l := range lines(b) {
				if bytes.Contains(l, []byte(`"pub"`)) {
					got++
				}
			}
		}
		sub.c.SetReadDeadline(time.Time{})
		times = append(times, time.Since(t0).Microseconds())
		if got < *nPubs {
			incomplete++
		}
		if !r.Subscribe.Recovered {
			notRecovered++
		}
		id++
		if _, err := sub.request(id, fmt.Sprintf(`{"id":%d,"unsubscribe":{"channel":%q}}`, id, ch)); err != nil {
			fatal("unsubscribe: %v", err)
		}
	}
	out := map[string]interface{}{"mode": "recovery", "iterations": *iters, "missed": *nPubs,
		"incomplete": incomplete, "not_recovered": notRecovered, "publish_errors": pubErrs}
	summary(times, out)
	emit(out)
	sub.c.Close()
	pub.c.Close()
}

// -- churn ---------------------------------------------------------------------------------

func churn() {
	var ok, failed int64
	var firstErr atomic.Value
	var mu sync.Mutex
	var all []int64
	stop := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *dialConc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []int64
			for time.Now().Before(stop) {
				t0 := time.Now()
				c, err := dial()
				if err != nil {
					atomic.AddInt64(&failed, 1)
					firstErr.Store(err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				lat = append(lat, time.Since(t0).Microseconds())
				atomic.AddInt64(&ok, 1)
				c.c.Close()
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	out := map[string]interface{}{"mode": "churn", "connects": ok, "failed": failed, "secs": el,
		"connects_per_s": float64(ok) / el, "origin": *origin}
	if failed > 0 {
		out["first_error"] = firstErr.Load()
	}
	summary(all, out)
	emit(out)
}

func main() {
	flag.Parse()
	switch *mode {
	case "fanout":
		fanout()
	case "recovery":
		recovery()
	case "churn":
		churn()
	default:
		fatal("unknown -mode %q", *mode)
	}
}
