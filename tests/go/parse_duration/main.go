// Reads one duration per line on stdin and prints what Go's time.ParseDuration makes of it:
// "ok <nanoseconds>" or "err <message>".  The reference for exporter/formats/duration.py.
package main

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		d, err := time.ParseDuration(in.Text())
		if err != nil {
			fmt.Fprintf(out, "err %s\n", err)
		} else {
			fmt.Fprintf(out, "ok %d\n", int64(d))
		}
	}
}
