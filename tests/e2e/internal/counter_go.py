"""The Go worker of the internal-services suite, written into the test's tmp dir and built by stackblaze's own Go
build (go.mod, no dependencies) with CGO_ENABLED=0 in its service env: Go's pure resolver, which reads the
replica's /etc/hosts itself.

It speaks raw RESP to the literal `cache.internal:6379`: BRPOP ids from `go:jobs`, then SADD `go:done` and INCR
`go:processed` for each; on every (re)connection SET `go:resolved` to the address the name led to and INCR
`go:connects`. Another loop dials `queue.internal:6379` twice a second until it answers, then SETs
`seen-by-counter` there (and `go:queue-seen` in the cache): a service added while it runs.
"""

GO_MOD = "module counter\n\ngo 1.21\n"

MAIN_GO = """\
package main

import (
\t"bufio"
\t"errors"
\t"fmt"
\t"io"
\t"net"
\t"os"
\t"strconv"
\t"time"
)

type conn struct {
\tc net.Conn
\tr *bufio.Reader
}

func dial(address string) (*conn, error) {
\tc, err := net.DialTimeout("tcp", address, 2*time.Second)
\tif err != nil {
\t\treturn nil, err
\t}
\treturn &conn{c, bufio.NewReader(c)}, nil
}

func (k *conn) do(words ...string) (interface{}, error) {
\tout := fmt.Sprintf("*%d\\r\\n", len(words))
\tfor _, w := range words {
\t\tout += fmt.Sprintf("$%d\\r\\n%s\\r\\n", len(w), w)
\t}
\tk.c.SetDeadline(time.Now().Add(10 * time.Second))
\tif _, err := k.c.Write([]byte(out)); err != nil {
\t\treturn nil, err
\t}
\treturn k.read()
}

func (k *conn) read() (interface{}, error) {
\tline, err := k.r.ReadString('\\n')
\tif err != nil {
\t\treturn nil, err
\t}
\tif len(line) < 3 {
\t\treturn nil, errors.New("short reply")
\t}
\tbody := line[1 : len(line)-2]
\tswitch line[0] {
\tcase '+', ':':
\t\treturn body, nil
\tcase '-':
\t\treturn nil, errors.New(body)
\tcase '$':
\t\tn, _ := strconv.Atoi(body)
\t\tif n < 0 {
\t\t\treturn nil, nil
\t\t}
\t\tbuf := make([]byte, n+2)
\t\tif _, err := io.ReadFull(k.r, buf); err != nil {
\t\t\treturn nil, err
\t\t}
\t\treturn string(buf[:n]), nil
\tcase '*':
\t\tn, _ := strconv.Atoi(body)
\t\tif n < 0 {
\t\t\treturn nil, nil
\t\t}
\t\titems := make([]interface{}, n)
\t\tfor i := range items {
\t\t\tif items[i], err = k.read(); err != nil {
\t\t\t\treturn nil, err
\t\t\t}
\t\t}
\t\treturn items, nil
\t}
\treturn nil, fmt.Errorf("unknown reply %q", line)
}

func work() error {
\tk, err := dial("cache.internal:6379")
\tif err != nil {
\t\treturn err
\t}
\tdefer k.c.Close()
\tpeer := k.c.RemoteAddr().(*net.TCPAddr).IP.String()
\tif _, err := k.do("SET", "go:resolved", peer); err != nil {
\t\treturn err
\t}
\tif _, err := k.do("INCR", "go:connects"); err != nil {
\t\treturn err
\t}
\tfmt.Printf("connected to cache.internal (%s)\\n", peer)
\tfor {
\t\treply, err := k.do("BRPOP", "go:jobs", "1")
\t\tif err != nil {
\t\t\treturn err
\t\t}
\t\tpair, ok := reply.([]interface{})
\t\tif !ok || len(pair) != 2 {
\t\t\tcontinue
\t\t}
\t\tid := pair[1].(string)
\t\tif _, err := k.do("SADD", "go:done", id); err != nil {
\t\t\treturn err
\t\t}
\t\tif _, err := k.do("INCR", "go:processed"); err != nil {
\t\t\treturn err
\t\t}
\t}
}

func watchQueue() {
\tfor {
\t\tif q, err := dial("queue.internal:6379"); err == nil {
\t\t\tpeer := q.c.RemoteAddr().(*net.TCPAddr).IP.String()
\t\t\t_, err = q.do("SET", "seen-by-counter", peer)
\t\t\tq.c.Close()
\t\t\tif err == nil {
\t\t\t\tfmt.Printf("queue.internal answers (%s)\\n", peer)
\t\t\t\tif k, err := dial("cache.internal:6379"); err == nil {
\t\t\t\t\tk.do("SET", "go:queue-seen", peer)
\t\t\t\t\tk.c.Close()
\t\t\t\t}
\t\t\t\treturn
\t\t\t}
\t\t}
\t\ttime.Sleep(500 * time.Millisecond)
\t}
}

func main() {
\tgo watchQueue()
\tfor {
\t\terr := work()
\t\tfmt.Fprintf(os.Stderr, "cache.internal: %v; reconnecting\\n", err)
\t\ttime.Sleep(200 * time.Millisecond)
\t}
}
"""
